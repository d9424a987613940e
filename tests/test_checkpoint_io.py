"""Checkpoints are written atomically: a crash or a full disk in the middle of a save leaves the previous
checkpoint intact (and no partial file), and training resumes from it."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import lightning as L
import pytest
import torch

from tests.conftest import REPO
from video_transformers.cli import run_cli
from video_transformers.lit import checkpoint_io
from video_transformers.lit.checkpoint_io import AtomicCheckpointIO, CheckpointWriteError

CONFIG = str(REPO / "configs" / "vivit_factorised.yaml")
_real_write = checkpoint_io.write_chunks


def _fail_midway(after_bytes: int):
    """A writer that writes ``after_bytes`` of the data, then fails as a full disk does."""

    def write(f, data):
        f.write(data[:after_bytes])
        f.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    return write


def test_failed_save_leaves_previous_checkpoint_and_no_temp_file(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "ckpts" / "last.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.arange(1000.0)}, path)
    before = path.read_bytes()
    monkeypatch.setattr(checkpoint_io, "write_chunks", _fail_midway(len(before) // 2))
    with pytest.raises(CheckpointWriteError, match=r"last\.ckpt: checkpoint not written.*previous file there.*intact"):
        io.save_checkpoint({"step": 2, "w": torch.zeros(1000)}, path)
    assert path.read_bytes() == before and io.load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # the partial temp file is gone


def test_trainer_load_is_weights_only(tmp_path):
    marker = tmp_path / "ran"
    from tests.test_safety import _evil_checkpoint

    path = _evil_checkpoint(tmp_path / "evil.ckpt", marker)
    with pytest.raises(ValueError, match=r"refused to unpickle.*--trust_checkpoint true"):
        AtomicCheckpointIO().load_checkpoint(path, weights_only=False)  # Lightning's flag alone is not trust
    assert not marker.exists()


class FailSavesFromEpoch(L.Callback):
    """From epoch ``epoch`` on, every checkpoint write dies half-way (disk full); records the files before."""

    before: dict[str, bytes] = {}

    def __init__(self, epoch: int = 1) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            FailSavesFromEpoch.before = _checkpoints(Path(trainer.default_root_dir).parents[1])  # runs/
            checkpoint_io.write_chunks = _fail_midway(4096)


def _checkpoints(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "ckpt" in p.name
    }


def test_disk_full_during_training_keeps_last_checkpoint_and_resume_works(embedded_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(checkpoint_io, "write_chunks", _real_write)  # restored after the test
    every_step = {
        "dirpath": "runs/steps",
        "filename": "latest",
        "every_n_train_steps": 1,
        "save_top_k": 1,
        "monitor": None,
        "enable_version_counter": False,
    }
    common = [
        "--config",
        CONFIG,
        "--data.root",
        str(embedded_root),
        "--data.num_workers",
        "0",
        "--data.batch_size",
        "4",
        "--trainer.limit_train_batches",
        "2",
        "--trainer.callbacks+="
        + json.dumps({"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": every_step}),
    ]
    failing = "--trainer.callbacks+=" + json.dumps({"class_path": "tests.test_checkpoint_io.FailSavesFromEpoch"})
    with pytest.raises(CheckpointWriteError, match="No space left on device"):
        run_cli(["fit", *common, "--trainer.max_epochs", "3", failing])
    # the first save of epoch 1 (step 3) died half-way: every checkpoint is as it was, and no temp file is left
    assert "steps/latest.ckpt" in FailSavesFromEpoch.before
    assert _checkpoints(tmp_path / "runs") == FailSavesFromEpoch.before
    latest = tmp_path / "runs/steps/latest.ckpt"
    assert torch.load(latest, weights_only=True)["global_step"] == 2

    monkeypatch.setattr(checkpoint_io, "write_chunks", _real_write)  # the disk has space again
    cli = run_cli(["fit", *common, "--trainer.max_epochs", "2", "--ckpt_path", str(latest)])
    assert cli.trainer.global_step == 4 and cli.trainer.current_epoch == 2  # epoch 1 ran from step 2, no more
    assert torch.load(latest, weights_only=True)["global_step"] == 4
