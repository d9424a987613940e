"""Data-parallel training through Lightning on a CPU: ``--trainer.strategy ddp --trainer.devices 2`` (gloo).

``vt`` runs as a subprocess (Lightning's DDP launcher re-executes the command for rank 1). Checked: the ranks
see disjoint training videos that together make up the epoch; the per-video multi-view aggregation of ``vt test``
on 2 ranks equals the single-process result on the same checkpoint; the training loss matches a single-process
run of the same global batch within tolerance.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import torch

from tests.conftest import REPO
from video_transformers.cli import run_cli

CONFIG = str(REPO / "configs" / "vivit_factorised.yaml")
OUT_ENV = "VT_TEST_DDP_OUT"


class RecordRank(L.Callback):
    """Writes, per rank, the training video indices and losses it saw and its aggregated test scores."""

    def __init__(self) -> None:
        self.videos: list[int] = []
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.videos += batch["video_index"].tolist()
        self.losses.append(float(outputs["loss"]))

    def _dump(self, trainer: L.Trainer, **extra: object) -> None:
        out = Path(os.environ[OUT_ENV]) / f"{trainer.state.fn.value}_rank{trainer.global_rank}.json"
        data = {"world_size": trainer.world_size, "videos": self.videos, "losses": self.losses, **extra}
        out.write_text(json.dumps(data))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._dump(trainer)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        scores, labels = pl_module.last_aggregated["test"]
        self._dump(trainer, scores=scores.tolist(), labels=labels.tolist())


def _args(root: Path, *extra: str) -> list[str]:
    return [
        "--config", CONFIG, "--data.root", str(root), "--data.num_workers", "0", "--data.eval_batch_size", "7",
        "--data.test_clips", "2", "--data.test_crops", "3", "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.init_args.save_dir=logs",
        "--trainer.deterministic", "true", "--trainer.callbacks+=tests.test_ddp.RecordRank", *extra,
    ]  # fmt: skip


def _vt(args: list[str], out: Path, cwd: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), **{OUT_ENV: str(out)})
    proc = subprocess.run([sys.executable, "-m", "video_transformers.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_ddp_two_cpu_ranks_match_single_process(embedded_root, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    # 24 training videos, 2 ranks x batch 4 = global batch 8: 3 steps make one epoch.
    _vt(["fit", *_args(embedded_root, *ddp, "--data.batch_size", "4", "--trainer.max_epochs", "1")], out, tmp_path)
    ranks = [json.loads((out / f"fit_rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 and len(r["losses"]) == 3 for r in ranks)
    seen = [set(r["videos"]) for r in ranks]
    assert len(ranks[0]["videos"]) == len(seen[0]) == 12 and len(seen[1]) == 12
    assert not seen[0] & seen[1], "a training video was sent to both ranks"
    assert seen[0] | seen[1] == set(range(24))

    ckpt = tmp_path / "runs/vivit_factorised/version_0/checkpoints/last.ckpt"
    _vt(["test", *_args(embedded_root, *ddp, "--ckpt_path", str(ckpt))], out, tmp_path)
    tests = [json.loads((out / f"test_rank{r}.json").read_text()) for r in (0, 1)]
    assert tests[0]["scores"] == tests[1]["scores"], "ranks disagree on the gathered aggregation"
    (written,) = tmp_path.glob("logs/**/test_predictions.csv")  # the test run's log folder
    rows = list(csv.DictReader(written.open()))
    assert len(rows) == 12 and len({r["path"] for r in rows}) == 12  # rank zero wrote every video once

    monkeypatch.setenv(OUT_ENV, str(out))
    monkeypatch.chdir(tmp_path)
    single = run_cli(["test", *_args(embedded_root, "--ckpt_path", str(ckpt))])
    scores, labels = single.model.last_aggregated["test"]
    assert len(labels) == 12  # every video once, 6 views each, across 2 ranks and uneven batches of 7
    torch.testing.assert_close(torch.tensor(tests[0]["scores"]), scores, rtol=1e-5, atol=1e-6)
    assert tests[0]["labels"] == labels.tolist()

    # Same initial weights (seed 0) and global batch 8 in one process: the first-step loss is the mean over
    # other clips of the same untrained model, so it agrees within sampling noise; DDP averages the ranks.
    single_fit = run_cli(["fit", *_args(embedded_root, "--data.batch_size", "8", "--trainer.max_epochs", "1")])
    single_losses = json.loads((out / "fit_rank0.json").read_text())["losses"]
    assert single_fit.trainer.world_size == 1 and len(single_losses) == 3
    ddp_first = (ranks[0]["losses"][0] + ranks[1]["losses"][0]) / 2
    assert abs(ddp_first - single_losses[0]) < 0.15, (ddp_first, single_losses[0])
