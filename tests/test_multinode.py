"""Two "nodes" on localhost: two ``torchrun --nnodes 2 --nproc-per-node 1`` launchers (gloo on the CPU) run
``vt fit --trainer.num_nodes 2`` from a shard folder, as two machines would with a shared file system or bucket.

Checked: each rank trains on a disjoint half of the videos, which together make the epoch; both nodes end with
identical weights; a second launch with ``--ckpt_path last`` and the same world size resumes at epoch 1 and again
keeps the ranks disjoint and the weights identical.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import lightning as L

from tests.conftest import REPO
from video_transformers.commands.data import main as data_main

CONFIG = str(REPO / "configs" / "vivit_factorised.yaml")
OUT_ENV = "VT_TEST_MULTINODE_OUT"


class NodeRecord(L.Callback):
    """Writes, per global rank and epoch range, the training videos the rank saw and a hash of its weights."""

    def __init__(self) -> None:
        self.videos: dict[int, list[int]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        self.videos.setdefault(trainer.current_epoch, []).extend(batch["video_index"].tolist())

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        digest = hashlib.sha256()
        for name, value in sorted(pl_module.state_dict().items()):
            digest.update(name.encode() + value.detach().cpu().contiguous().numpy().tobytes())
        out = Path(os.environ[OUT_ENV]) / f"rank{trainer.global_rank}_step{trainer.global_step}.json"
        env = {k: os.environ.get(k) for k in ("RANK", "LOCAL_RANK", "GROUP_RANK", "WORLD_SIZE")}
        data = {"world_size": trainer.world_size, "num_nodes": trainer.num_nodes, "node_rank": trainer.node_rank,
                "videos": self.videos, "weights": digest.hexdigest(), "env": env}  # fmt: skip
        out.write_text(json.dumps(data))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_two_nodes(args: list[str], out: Path, cwd: Path) -> None:
    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), **{OUT_ENV: str(out)})
    procs = []
    for node in (0, 1):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
               "--node-rank", str(node), "--master-addr", "127.0.0.1", "--master-port", str(port),
               "-m", "video_transformers.cli", *args]  # fmt: skip
        log = open(cwd / f"node{node}.log", "w")  # noqa: SIM115 (closed below)
        procs.append((subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    for proc, log in procs:
        try:
            proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
    for node, (proc, _) in enumerate(procs):
        assert proc.returncode == 0, (cwd / f"node{node}.log").read_text()[-4000:]


def test_two_nodes_disjoint_videos_identical_weights_and_resume(embedded_root, tmp_path):
    shards = tmp_path / "shards"
    assert data_main(["shard", "--root", str(embedded_root), "--format", "embedded", "--out", str(shards),
                      "--splits", "train", "val", "--workers", "1"]) == 0  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    args = [
        "fit", "--config", CONFIG, "--data.source", "stream", "--data.root", str(shards),
        "--data.num_workers", "0", "--data.batch_size", "4", "--trainer.limit_val_batches", "0",
        "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp", "--trainer.devices", "1",
        "--trainer.num_nodes", "2", "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.init_args.save_dir=logs", "--trainer.callbacks+=tests.test_multinode.NodeRecord",
    ]  # fmt: skip
    # 24 videos, 2 nodes x batch 4: 3 steps an epoch
    _launch_two_nodes([*args, "--trainer.max_epochs", "1"], out, tmp_path)
    ranks = [json.loads((out / f"rank{r}_step3.json").read_text()) for r in (0, 1)]
    assert [(r["world_size"], r["num_nodes"], r["node_rank"]) for r in ranks] == [(2, 2, 0), (2, 2, 1)]
    seen = [r["videos"]["0"] for r in ranks]
    assert len(seen[0]) == len(seen[1]) == 12 and not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(24))
    assert ranks[0]["weights"] == ranks[1]["weights"]

    ckpt = tmp_path / "runs/vivit_factorised/checkpoints/last.ckpt"
    assert ckpt.is_file()
    _launch_two_nodes([*args, "--trainer.max_epochs", "2", "--ckpt_path", "last"], out, tmp_path)
    resumed = [json.loads((out / f"rank{r}_step6.json").read_text()) for r in (0, 1)]
    assert all(list(r["videos"]) == ["1"] for r in resumed), "the resumed run repeated epoch 0"
    seen = [r["videos"]["1"] for r in resumed]
    assert not set(seen[0]) & set(seen[1]) and sorted(seen[0] + seen[1]) == list(range(24))
    assert resumed[0]["weights"] == resumed[1]["weights"] != ranks[0]["weights"]
