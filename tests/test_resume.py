"""Reproducible, resumable runs: a fit interrupted after its first epoch and resumed with ``--ckpt_path last``
ends with exactly the weights of an uninterrupted fit (CPU, ``--trainer.deterministic true``), optimizer,
scheduler, epoch and data order included."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from tests.conftest import REPO
from video_transformers.cli import run_cli

CONFIG = str(REPO / "configs" / "vivit_factorised.yaml")


class CrashAtEpoch(L.Callback):
    """Simulates a crash (node failure) at the start of epoch ``epoch``, after the previous epoch's checkpoint."""

    def __init__(self, epoch: int = 1) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError(f"simulated crash at epoch {self.epoch}")


def _fit(root, *extra):
    args = [
        "fit",
        "--config",
        CONFIG,
        "--data.root",
        str(root),
        "--data.num_workers",
        "0",
        "--data.batch_size",
        "4",
        "--data.eval_batch_size",
        "12",
        "--trainer.max_epochs",
        "2",
        "--trainer.limit_train_batches",
        "2",
        "--trainer.deterministic",
        "true",
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.init_args.save_dir=logs",
        *extra,
    ]
    return run_cli(args)


def _weights(cli):
    return {k: v.detach().clone() for k, v in cli.model.state_dict().items()}


def test_resume_from_last_equals_uninterrupted(embedded_root, tmp_path, monkeypatch):
    for d in ("full", "crash", "no_rng"):
        (tmp_path / d).mkdir()
    monkeypatch.chdir(tmp_path / "full")
    full = _fit(embedded_root)
    expected = _weights(full)
    assert full.trainer.global_step == 4 and full.trainer.current_epoch == 2

    monkeypatch.chdir(tmp_path / "crash")
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit(embedded_root, "--trainer.callbacks+=tests.test_resume.CrashAtEpoch")
    last = tmp_path / "crash/runs/vivit_factorised/version_0/checkpoints/last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=False)
    assert saved["global_step"] == 2 and saved["epoch"] == 0
    assert saved["optimizer_states"] and saved["lr_schedulers"][0]["last_epoch"] == 2
    assert any("ResumeState" in k for k in saved["callbacks"]), "RNG state not in the checkpoint"

    resumed = _fit(embedded_root, "--ckpt_path", "last")
    assert resumed.trainer.global_step == 4 and resumed.trainer.current_epoch == 2
    got = _weights(resumed)
    assert got.keys() == expected.keys()
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=0, atol=0, msg=f"{k} differs after resume")
    opt_full = full.trainer.optimizers[0].state_dict()["state"]
    opt_resumed = resumed.trainer.optimizers[0].state_dict()["state"]
    for i in opt_full:
        torch.testing.assert_close(opt_resumed[i]["exp_avg_sq"], opt_full[i]["exp_avg_sq"], rtol=0, atol=0)

    # The same checkpoint without its RNG state: epoch 1 draws other clips, so the weights differ. The equality
    # above therefore depends on ResumeState, not on luck.
    saved["callbacks"] = {k: v for k, v in saved["callbacks"].items() if "ResumeState" not in k}
    stripped = tmp_path / "no_rng" / "epoch0.ckpt"
    torch.save(saved, stripped)
    monkeypatch.chdir(tmp_path / "no_rng")
    blind = _weights(_fit(embedded_root, "--ckpt_path", str(stripped), "--trust_checkpoint", "true"))
    assert any(not torch.equal(blind[k], expected[k]) for k in expected), "resume without RNG state matched anyway"


def test_last_is_the_final_epoch_when_the_metric_stops_improving(embedded_root, tmp_path, monkeypatch):
    """Lightning writes save_last's file only when a top-k checkpoint is saved; ``last.ckpt`` must follow every
    epoch, or ``--ckpt_path last`` would silently go back to the best epoch."""
    monkeypatch.chdir(tmp_path)
    frozen = "--model.optimizer.init_args.lr=0.0"  # val/acc1 cannot improve after epoch 0
    cli = _fit(embedded_root, frozen, "--trainer.max_epochs=3")
    ckpts = tmp_path / "runs/vivit_factorised/version_0/checkpoints"
    best = torch.load(ckpts / "best.ckpt", map_location="cpu", weights_only=True)
    last = torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=True)
    assert best["epoch"] == 0 and best["global_step"] == 2  # the best epoch is the first
    assert last["epoch"] == 2 and last["global_step"] == 6 == cli.trainer.global_step  # the last is the last
