"""Shards (``vt data shard``) and training from them (``--data.source stream``), offline: a local folder and an S3
bucket served on localhost by moto's server mode.

Checked: every packed video's bytes and label come back, and 2 ranks (gloo) read disjoint halves that make up the
whole split; ``vt fit`` / ``vt test`` run from a shard folder and from ``s3://`` (4 x 3 views per video, every test
video scored once); a run resumed from a mid-epoch checkpoint serves exactly the batches the uninterrupted epoch
served after that point.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from tests.conftest import REPO
from video_transformers.cli import run_cli
from video_transformers.commands.data import main as data_main
from video_transformers.data import VideoDataError, VideoDataModule

CONFIG = str(REPO / "configs" / "vivit_factorised.yaml")

RANK_SCRIPT = """
import hashlib, json, sys
import torch.distributed as dist
from litdata import StreamingDataLoader, StreamingDataset
dist.init_process_group("gloo")
ds = StreamingDataset(sys.argv[1], shuffle=True, drop_last=False, seed=3)
digest = lambda items: [(it["index"], it["label"], hashlib.sha256(it["video"]).hexdigest()) for it in items]
loader = StreamingDataLoader(ds, batch_size=2, num_workers=2, collate_fn=digest)  # hashed in the workers
seen = [row for batch in loader for row in batch]
with open(sys.argv[2] + f"/rank{dist.get_rank()}.json", "w") as f:
    json.dump(seen, f)
dist.destroy_process_group()
"""


@pytest.fixture(scope="module")
def shards(embedded_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shards") / "embedded"
    code = data_main(
        ["shard", "--root", str(embedded_root), "--format", "embedded", "--out", str(out), "--workers", "2"]
    )
    assert code == 0
    return out


def _files(embedded_root: Path, split: str) -> list[tuple[int, str]]:
    """(label, sha256) of each video of the split, in the data module's order."""
    dm = VideoDataModule(dataset="embedded", root=str(embedded_root), num_workers=0, sampling_rate=3)
    records, _ = dm.checked_split(split)
    return [(rec.label, hashlib.sha256(Path(rec.path).read_bytes()).hexdigest()) for rec in records]


def test_shard_round_trip_over_two_ranks(shards, embedded_root, tmp_path):
    manifest = json.loads((shards / "shards.json").read_text())
    assert manifest["class_names"] == VideoDataModule(root=str(embedded_root)).class_names
    assert {s: v["videos"] for s, v in manifest["splits"].items()} == {"train": 24, "val": 12, "test": 12}
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    script = tmp_path / "ranks.py"
    script.write_text(RANK_SCRIPT)
    proc = subprocess.run([*cmd, str(script), str(shards / "train"), str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    indices = [[i for i, _, _ in r] for r in ranks]
    assert len(indices[0]) == len(indices[1]) == 12
    assert not set(indices[0]) & set(indices[1]), "a video was read by both ranks"
    files = _files(embedded_root, "train")
    got = sorted((i, label, sha) for r in ranks for i, label, sha in r)
    assert got == [(i, label, sha) for i, (label, sha) in enumerate(files)]  # every video, its bytes and label


def test_shard_refuses_to_overwrite_and_names_missing_manifest(shards, embedded_root, tmp_path, capsys):
    args = ["shard", "--root", str(embedded_root), "--format", "embedded", "--out", str(shards), "--splits", "test"]
    assert data_main(args) == 2
    assert "shards exist already (pass --overwrite" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"shards\.json: no shard manifest \(make shards with: vt data shard"):
        VideoDataModule(source="stream", root=str(tmp_path))


def test_a_streamed_video_that_fails_to_decode_is_named(shards, embedded_root):
    dm = VideoDataModule(source="stream", root=str(shards), num_workers=0, sampling_rate=3)
    dm.setup("fit")
    item = dm._datasets["train"].item
    info = json.dumps({"duration": 2.0, "fps": 16.0, "width": 40, "height": 40, "frames": 32})
    sample = {"video": b"not a video", "label": 0, "index": 3, "name": "videos/broken.mp4", "info": info}
    with pytest.raises(VideoDataError, match=rf"^{shards}/train: videos/broken\.mp4: cannot decode"):
        item(sample)


class Record(L.Callback):
    """The training video indices of every batch, and the test views' (video, view) pairs (the CLI builds it
    from its class path; ``Record.last`` is the latest one)."""

    last: Record | None = None

    def __init__(self) -> None:
        self.train: list[list[int]] = []
        self.test: list[tuple[int, int]] = []
        Record.last = self

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        self.train.append(batch["video_index"].tolist())

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:  # noqa: ANN001
        self.test += list(zip(batch["video_index"].tolist(), batch["view_index"].tolist(), strict=True))


def _fit(root: str, tmp: Path, *extra: str, subcommand: str = "fit"):
    args = [
        subcommand, "--config", CONFIG, "--data.source", "stream", "--data.root", root,
        "--data.stream_cache", str(tmp / "cache"), "--data.num_workers", "2", "--data.batch_size", "4",
        "--data.eval_batch_size", "24", "--trainer.deterministic", "true",
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger", f"--trainer.logger.init_args.save_dir={tmp}/logs",
        f"--trainer.default_root_dir={tmp}", *extra,
    ]  # fmt: skip
    return run_cli(args)


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_fit_and_test_from_a_shard_folder(shards, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = _fit(str(shards), tmp_path, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3",
               "--trainer.limit_val_batches", "1", "--trainer.callbacks+=tests.test_shards.Record")  # fmt: skip
    record = Record.last
    assert len(record.train) == 3 and all(len(b) == 4 for b in record.train)
    before = _weights(cli.model)
    ckpt = tmp_path / "checkpoints/last.ckpt"
    cli.trainer.save_checkpoint(ckpt)
    cli = _fit(str(shards), tmp_path, "--ckpt_path", str(ckpt), "--data.test_clips", "4", "--data.test_crops", "3",
               "--trainer.callbacks+=tests.test_shards.Record", subcommand="test")  # fmt: skip
    record = Record.last
    assert all(torch.equal(v, before[k]) for k, v in _weights(cli.model).items())
    # 12 test videos x 4 clips x 3 crops, each view once: the same multi-view evaluation as files on disk
    assert sorted(record.test) == [(v, k) for v in range(12) for k in range(12)]
    scores, labels = cli.model.last_aggregated["test"]
    assert scores.shape == (12, 12) and sorted(labels.tolist()) == list(range(12))


def test_resume_mid_epoch_skips_what_the_epoch_served(shards, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    every2 = [
        "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
        f"--trainer.callbacks.dirpath={tmp_path}/steps", "--trainer.callbacks.every_n_train_steps=2",
        "--trainer.callbacks.save_top_k=-1", "--trainer.callbacks.filename={step}",
    ]  # fmt: skip
    common = [
        "--trainer.max_epochs",
        "1",
        "--trainer.limit_val_batches",
        "0",
        "--trainer.callbacks+=tests.test_shards.Record",
    ]
    full = _fit(str(shards), tmp_path, *common, *every2)
    order = Record.last.train
    assert len(order) == 6 and sorted(sum(order, [])) == list(range(24))  # one epoch: every video once
    (tmp_path / "resumed").mkdir()
    monkeypatch.chdir(tmp_path / "resumed")
    resumed = _fit(str(shards), tmp_path / "resumed", *common, "--ckpt_path", str(tmp_path / "steps/step=2.ckpt"))
    assert Record.last.train == order[2:]  # the 4 batches the epoch had left, in the same order
    assert resumed.trainer.global_step == full.trainer.global_step == 6


@pytest.fixture
def s3_endpoint(monkeypatch):
    """An S3 endpoint on localhost (moto's server mode) with an empty bucket ``videos``; fake credentials."""
    import boto3
    from moto.server import ThreadedMotoServer

    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=url).create_bucket(Bucket="videos")
    yield url
    server.stop()


def test_shard_to_s3_and_fit_from_the_bucket(embedded_root, s3_endpoint, tmp_path, monkeypatch):
    import boto3

    monkeypatch.chdir(tmp_path)
    url = "s3://videos/embedded"
    args = ["shard", "--root", str(embedded_root), "--format", "embedded", "--out", url,
            "--endpoint-url", s3_endpoint, "--splits", "train", "val", "--workers", "1"]  # fmt: skip
    assert data_main(args) == 0
    keys = {o["Key"] for o in boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket="videos")["Contents"]}
    assert {"embedded/shards.json", "embedded/train/index.json", "embedded/val/index.json"} <= keys
    cli = _fit(url, tmp_path, "--data.endpoint_url", s3_endpoint, "--trainer.max_epochs", "1",
               "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
               "--trainer.callbacks+=tests.test_shards.Record")  # fmt: skip
    assert cli.trainer.global_step == 2 and len(Record.last.train) == 2
    assert list((tmp_path / "cache/train").rglob("chunk-*.bin")), "no chunk was downloaded from the bucket"
    assert "val/acc1" in cli.trainer.callback_metrics
