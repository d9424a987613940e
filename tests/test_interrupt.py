"""`vt fit` stopped by SIGTERM / SIGINT saves a resumable checkpoint, exits non-zero saying how to resume,
and the resumed run continues from the saved step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import lightning as L
import pytest
import torch

from tests.conftest import REPO
from video_transformers.cli import run_cli
from video_transformers.lit.interrupt import TrainingInterrupted

CONFIG = str(REPO / "configs" / "vivit_factorised.yaml")


class SignalAt(L.Callback):
    """Sends ``signum`` to this process when training batch ``step`` starts (as a scheduler would)."""

    def __init__(self, step: int = 2, signum: int = int(signal.SIGTERM)) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


class FirstStep(L.Callback):
    """Records the global step of every training batch (class-level: the CLI builds the instance)."""

    seen: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        FirstStep.seen.append(trainer.global_step)


def _args(root, *extra):
    return [
        "fit",
        "--config",
        CONFIG,
        "--data.root",
        str(root),
        "--data.num_workers",
        "0",
        "--data.batch_size",
        "4",
        "--trainer.max_epochs",
        "1",
        "--trainer.limit_train_batches",
        "5",
        *extra,
    ]


def _callback(cls: str, **init_args) -> str:
    return "--trainer.callbacks+=" + json.dumps({"class_path": cls, "init_args": init_args})


def test_sigint_saves_checkpoint_and_resume_continues_from_its_step(embedded_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    with pytest.raises(TrainingInterrupted) as e:
        run_cli(_args(embedded_root, _callback("tests.test_interrupt.SignalAt", step=2, signum=int(signal.SIGINT))))
    ckpt = tmp_path / "runs/vivit_factorised/checkpoints/interrupted.ckpt"
    assert e.value.checkpoint == ckpt and e.value.exit_code == 130
    assert "interrupted by SIGINT at step 3" in e.value.message
    assert f"vt fit --config {CONFIG}" in e.value.message and f"--ckpt_path {ckpt}" in e.value.message
    saved = torch.load(ckpt, weights_only=True)  # our own checkpoints stay weights-only loadable
    assert saved["global_step"] == 3  # the batch in flight when the signal came was finished, then saved
    # a stopped run gives the signals back (or leaves a handler that acts as the original)
    assert all(signal.getsignal(s) in (before[s], signal.SIG_DFL) or callable(signal.getsignal(s)) for s in before)

    FirstStep.seen.clear()
    cli = run_cli([*_args(embedded_root, _callback("tests.test_interrupt.FirstStep")), "--ckpt_path", str(ckpt)])
    assert FirstStep.seen[0] == 3 and cli.trainer.global_step == 5  # continued at step 3, not from 0, not past 5
    assert cli.trainer.optimizers[0].state_dict()["state"][0]["step"] == 5  # optimizer state came back too


def test_sigterm_in_a_real_vt_process_exits_143_with_resume_command(embedded_root, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-c",
        "from video_transformers.cli import main; main()",
        *_args(embedded_root, _callback("tests.test_interrupt.SignalAt", step=1)),
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    ckpt = tmp_path / "runs/vivit_factorised/checkpoints/interrupted.ckpt"
    assert proc.returncode == 143, proc.stderr[-3000:]
    assert "interrupted by SIGTERM at step 2" in proc.stderr and "Resume with:" in proc.stderr
    assert f"--ckpt_path {ckpt}" in proc.stderr
    assert torch.load(ckpt, weights_only=True)["global_step"] == 2
