"""`vt features`: embeddings equal to the model's own forward_features / pre-logits on `vt test`'s clips, any
block's CLS or mean token, per view or pooled, shards that resume after SIGTERM / SIGKILL byte-identical to an
uninterrupted run (whose shards, in turn, equal a 2-rank DDP run's), bf16, and settings checked on resume."""

from __future__ import annotations

import csv
import json
import os
import re
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import REPO
from tests.test_predict import DATA, make_checkpoint
from video_transformers.commands.features import main
from video_transformers.inference import load_model
from video_transformers.inference.clips import describe_views, view_clips
from video_transformers.inference.features import Embedder, block_names, resolve_layer
from video_transformers.models import create_model, get_entry

DATA_FLAGS = [f"--data.{k}={v}" for k, v in DATA.items() if k != "mean"] + ["--data.num_workers=0"]


@pytest.fixture(scope="module")
def checkpoint(embedded_root, tmp_path_factory) -> Path:
    return make_checkpoint(embedded_root, tmp_path_factory.mktemp("ckpt"))


def read_folder(out: Path) -> tuple[torch.Tensor, list[dict[str, str]]]:
    rows = list(csv.DictReader((out / "index.csv").open()))
    shards = sorted({int(r["shard"]) for r in rows})
    return torch.cat([load_file(out / f"shard_{k:05d}.safetensors")["features"] for k in shards]), rows


def tiny(name: str, **kw) -> torch.nn.Module:
    return create_model(name, **{**get_entry(name).tiny, **kw}).eval()


# -- the same numbers as the model's own methods -------------------------------------------------------------
def test_features_equal_pre_logits_on_vt_test_clips(checkpoint, embedded_root, tmp_path, monkeypatch, capsys):
    """The data module's test split, cut as `vt test` cuts it (2 clips x 3 crops), through
    forward_head(forward_features(x), pre_logits=True); per view and pooled per video."""
    from video_transformers.data import VideoDataModule

    out = tmp_path / "feats"
    common = ["--ckpt_path", str(checkpoint), f"--data.root={embedded_root}", *DATA_FLAGS, "--views", "2x3"]
    assert main([*common, "--shard_size", "5", "--batch_size", "7", "--out", str(out)]) == 0
    feats, rows = read_folder(out)

    model = load_model(checkpoint).model
    dm = VideoDataModule(root=str(embedded_root), **{**DATA, "mean": model.mean, "std": model.std}, test_clips=2,
                         test_crops=3, num_workers=0, eval_batch_size=5)  # fmt: skip
    dm.setup("test")
    loader = dm.test_dataloader()
    with torch.no_grad():
        expected = torch.cat([model.forward_head(model.forward_features(b["video"]), pre_logits=True) for b in loader])
    assert feats.shape == expected.shape == (12 * 6, model.embed_dim)
    torch.testing.assert_close(feats, expected, rtol=1e-5, atol=1e-5)

    records = dm.checked_split("test")[0]
    for i, row in enumerate(rows):
        v, j = divmod(i, 6)
        view = describe_views(loader.dataset, v)[j]
        assert row["path"] == str(records[v].path) and row["label"] == dm.class_names[records[v].label]
        assert (row["view"], float(row["start"]), float(row["end"])) == (view.name, round(view.start, 4),
                                                                          round(view.end, 4))  # fmt: skip
    assert [r["shard"] for r in rows] == ["0"] * 30 + ["1"] * 30 + ["2"] * 12  # 5 videos per shard

    pooled = tmp_path / "pooled"
    assert main([*common, "--pool", "mean", "--out", str(pooled)]) == 0
    means, prow = read_folder(pooled)
    torch.testing.assert_close(means, expected.reshape(12, 6, -1).mean(1), rtol=1e-5, atol=1e-5)
    assert [r["path"] for r in prow] == [str(r.path) for r in records] and prow[0]["view"] == "mean of 2x3"

    # the README's linear probe reads these folders (here trained and tested on the same 12 videos)
    monkeypatch.setattr(sys, "argv", ["linear_probe.py", str(pooled), str(pooled)])
    runpy.run_path(str(REPO / "examples" / "linear_probe.py"), run_name="__main__")
    assert re.search(r"linear probe on 32-d features: train top-1 [\d.]+% \(12 rows\)", capsys.readouterr().out)


def test_paths_mode_embeds_vt_predicts_views(checkpoint, embedded_root, tmp_path, capsys):
    files = sorted((embedded_root / "videos" / "test").glob("*.mp4"))[:2]
    out = tmp_path / "feats"
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    args = ["--ckpt_path", str(checkpoint), "--paths", *map(str, files), str(bad), "--views", "2x1", "--out", str(out)]
    assert main(args) == 0
    assert "1 listed videos were left out" in capsys.readouterr().out
    feats, rows = read_folder(out)
    lm = load_model(checkpoint)
    with torch.no_grad():
        expected = torch.cat([lm.model.forward_head(lm.model.forward_features(view_clips(f, lm.spec, clips=2,
                              crops=1)[0]), pre_logits=True) for f in files])  # fmt: skip
    torch.testing.assert_close(feats, expected, rtol=1e-5, atol=1e-5)
    assert [r["path"] for r in rows] == [str(files[0])] * 2 + [str(files[1])] * 2 and rows[0]["label"] == ""

    npy = tmp_path / "npy"
    assert main([*args[:-1], str(npy), "--format", "npy"]) == 0
    assert torch.equal(torch.from_numpy(np.load(npy / "shard_00000.npy")), feats)
    assert (npy / "index.csv").read_text() == (out / "index.csv").read_text()


def test_block_and_token_layers_follow_the_models_methods():
    x = torch.randn(2, 3, 4, 32, 32)
    ts = tiny("timesformer_base_divided_8x224")
    with torch.no_grad():
        tokens = ts.forward_tokens(x)  # the last block's output, before the final norm
        pre = ts.forward_head(ts.forward_features(x), pre_logits=True)
        assert block_names(ts) == ["blocks.0", "blocks.1"]
        last_mean = Embedder(ts, resolve_layer(ts, -1, "mean"))(x)
        torch.testing.assert_close(last_mean, tokens[:, 1:].mean(1))
        torch.testing.assert_close(Embedder(ts, resolve_layer(ts, "blocks.1", "cls"))(x), tokens[:, 0])
        torch.testing.assert_close(Embedder(ts, resolve_layer(ts, "features"))(x), pre)  # CLS of the final norm

        # ViViT-FE: the spatial encoder runs per temporal index ((B*t) rows): its CLS tokens, averaged over t
        fe = tiny("vivit_base_factorised_encoder_16x2")
        assert block_names(fe) == ["spatial.blocks.0", "spatial.blocks.1", "temporal.blocks.0"]
        spatial = Embedder(fe, resolve_layer(fe, "spatial.norm", "cls"))(x)
        torch.testing.assert_close(spatial, fe.forward_spatial(x).mean(1))

        # TimeSformer space-only: frames are images; its features are already averaged over frames
        so = tiny("timesformer_base_space_only_8x224")
        torch.testing.assert_close(Embedder(so, resolve_layer(so, "norm", "cls"))(x), so.forward_features(x)[:, 0])


def test_layer_errors_name_the_choice():
    m3 = tiny("vivit_base_factorised_self_attention_16x2")  # no CLS token: average pooling
    assert resolve_layer(m3, "features").token == "mean"
    with pytest.raises(ValueError, match="has no CLS token"):
        resolve_layer(m3, "features", "cls")
    with pytest.raises(ValueError, match="the model has 2 blocks"):
        resolve_layer(m3, 5)
    with pytest.raises(ValueError, match="not a module of ViViTFactorisedSelfAttention.*encoder.blocks.0"):
        resolve_layer(m3, "blocks.9")
    with pytest.raises(ValueError, match="--token applies to token layers"):
        resolve_layer(m3, "pre_logits", "mean")


def test_bf16_and_changed_settings(checkpoint, embedded_root, tmp_path, capsys):
    common = ["--ckpt_path", str(checkpoint), f"--data.root={embedded_root}", *DATA_FLAGS, "--views", "1x1"]
    fp32, bf16 = tmp_path / "fp32", tmp_path / "bf16"
    assert main([*common, "--out", str(fp32)]) == 0
    assert main([*common, "--trainer.precision", "bf16-mixed", "--out", str(bf16)]) == 0
    a, b = read_folder(fp32)[0], read_folder(bf16)[0]
    assert json.loads((bf16 / "features.json").read_text())["precision"] == "bf16-mixed"
    assert b.dtype == torch.float32 and not torch.equal(a, b)
    assert ((a - b).norm(dim=1) / a.norm(dim=1)).max() < 0.05

    assert main([*common, "--layer", "features", "--out", str(fp32)]) == 2  # resuming with another layer
    err = capsys.readouterr().err
    assert "holds features made with other settings" in err and 'layer: "pre_logits" -> "features"' in err


# -- resume: kill a real run, rerun it ----------------------------------------------------------------------
def _cmd(checkpoint: Path, root: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "video_transformers.cli", "features", "--ckpt_path", str(checkpoint),
            f"--data.root={root}", *DATA_FLAGS, "--split", "train", "--views", "2x3", "--shard_size", "1",
            "--batch_size", "2", "--out", str(out), *extra]  # fmt: skip


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), WANDB_MODE="offline")


def _shards(out: Path) -> set[str]:
    return {p.name for p in out.glob("shard_*.safetensors")}


def _kill_after_new_shard(cmd: list[str], out: Path, sig: int) -> subprocess.CompletedProcess:
    """Start ``cmd`` in its own process group; once it writes a shard that was not there, signal the group
    (as SLURM and `timeout` do)."""
    before = _shards(out) if out.exists() else set()
    proc = subprocess.Popen(cmd, env=_env(), cwd=REPO, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while not (_shards(out) - before if out.exists() else set()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.killpg(proc.pid, sig)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def test_killed_runs_resume_byte_identical(checkpoint, embedded_root, tmp_path):
    """Reference: an uninterrupted run on 2 DDP ranks (CPU, gloo). Then a run stopped by SIGTERM, resumed and
    stopped by SIGKILL, resumed to the end: every file equals the reference's, byte for byte."""
    ref, out = tmp_path / "ref", tmp_path / "out"
    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    done = subprocess.run(_cmd(checkpoint, embedded_root, ref, *ddp), env=_env(), cwd=REPO, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    total = len(_shards(ref))
    assert total == 24  # 2 train videos x 12 classes, one per shard

    term = _kill_after_new_shard(_cmd(checkpoint, embedded_root, out), out, signal.SIGTERM)
    assert term.returncode == 143 and "interrupted by SIGTERM" in term.stderr, term.stderr[-3000:]
    after_term = len(_shards(out))
    assert 0 < after_term < total and not (out / "index.csv").exists()

    kill = _kill_after_new_shard(_cmd(checkpoint, embedded_root, out), out, signal.SIGKILL)
    assert kill.returncode == -signal.SIGKILL
    after_kill = len(_shards(out))
    assert after_term < after_kill < total

    last = subprocess.run(_cmd(checkpoint, embedded_root, out), env=_env(), cwd=REPO, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert last.returncode == 0, last.stderr[-3000:]
    assert f"({after_kill} already done)" in last.stdout
    names = sorted(p.name for p in ref.iterdir())
    assert sorted(p.name for p in out.iterdir()) == names  # no temporary files left behind
    for name in names:
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
