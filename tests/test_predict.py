"""`vt predict`: checkpoint loading with its data settings, views identical to `vt test`'s, JSON/CSV output,
bad input per file, sliding windows and ViViT-FE streaming reuse (equal to recomputing every window)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from video_transformers.data import synthetic
from video_transformers.inference import ClipWindowScorer, FactorisedEncoderStream, iter_grid_frames, load_model
from video_transformers.inference.clips import expand_paths, stride_frames, view_clips

TINY_FE = dict(patch_size=8, tubelet_size=2, embed_dim=32, spatial_depth=1, temporal_depth=1, num_heads=2)
_CACHE: dict[str, Path] = {}


DATA = dict(num_frames=8, sampling_rate=2, fps=16, crop_size=32, eval_short_side=40, mean=(0.4, 0.45, 0.5))


def make_checkpoint(root: Path, out_dir: Path, sampling: str = "time") -> Path:
    """A real `vt fit`-style Lightning checkpoint (one optimiser step) of a tiny ViViT-FE, built once per session
    (per ``data.sampling``)."""
    if sampling in _CACHE:
        return _CACHE[sampling]
    import lightning as L

    from video_transformers.data import VideoDataModule
    from video_transformers.lit import VideoClassifier

    L.seed_everything(0, verbose=False)
    dm = VideoDataModule(root=str(root), num_workers=0, batch_size=4, sampling=sampling, std=(0.2, 0.25, 0.3), **DATA)
    model = VideoClassifier(
        backbone="vivit_base_factorised_encoder_16x2",
        backbone_kwargs=TINY_FE,
        num_classes=12,
        num_frames=8,
        img_size=32,
        class_names=list(synthetic.CLASS_NAMES),
    )
    trainer = L.Trainer(
        max_steps=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(model, dm)
    path = out_dir / f"tiny_fe_{sampling}.ckpt"
    trainer.save_checkpoint(path)
    _CACHE[sampling] = path
    return path


@pytest.fixture(scope="session")
def checkpoint(embedded_root, tmp_path_factory) -> Path:
    return make_checkpoint(embedded_root, tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="session")
def long_video(tmp_path_factory) -> Path:
    """8 s at 16 fps: four embedded-dataset videos back to back."""
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    classes = ["move_right", "grow", "static", "move_up"]
    frames = np.concatenate([synthetic.render(c, np.random.default_rng(i)) for i, c in enumerate(classes)])
    synthetic.write_mp4(path, frames)
    return path


def test_checkpoint_carries_its_data_settings(checkpoint):
    lm = load_model(checkpoint)
    s = lm.spec
    assert (s.num_frames, s.sampling_rate, s.fps, s.crop_size, s.short_side) == (8, 2, 16.0, 32, 40)
    assert s.mean == (0.4, 0.45, 0.5) and s.std == (0.2, 0.25, 0.3)  # the data module's, not the model's
    assert lm.class_names == list(synthetic.CLASS_NAMES) and not lm.model.training


def test_data_mean_none_means_the_models(checkpoint, tmp_path):
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    ckpt["datamodule_hyper_parameters"].update(mean=None, std=None)  # vt fit's default: follow the model
    path = tmp_path / "model_norm.ckpt"
    torch.save(ckpt, path)
    lm = load_model(path)
    assert lm.spec.mean == tuple(lm.model.mean) == (0.5, 0.5, 0.5)  # ViViT's released-weights normalisation
    assert lm.spec.std == tuple(lm.model.std)


def test_views_equal_the_test_pipeline(checkpoint, embedded_root):
    from video_transformers.data import VideoDataModule

    lm = load_model(checkpoint)
    s = lm.spec
    dm = VideoDataModule(root=str(embedded_root), num_workers=0, test_clips=4, test_crops=3, mean=s.mean, std=s.std)
    dm.setup("test")
    dataset = dm._datasets["test"]
    record = dm.checked_split("test")[0][5]
    x, views, _ = view_clips(record.path, s, clips=4, crops=3)
    expected = torch.stack([dataset[5 * 12 + i]["video"] for i in range(12)])
    assert [v.name for v in views[:4]] == ["clip0_crop0", "clip0_crop1", "clip0_crop2", "clip1_crop0"]
    torch.testing.assert_close(x, expected, rtol=0, atol=0)


@pytest.mark.parametrize("sampling", ["time", "timesformer", "uniformerv2"])  # time windows, 8x32, u8
def test_predict_gives_vt_tests_per_video_scores(embedded_root, tmp_path_factory, tmp_path, sampling):
    """`vt test` writes test_predictions.csv; `vt predict` with the same views on the same files gives the same
    top-1 and scores, for every sampling preset (one sampler, dataset, transform and aggregation)."""
    import lightning as L

    from video_transformers.commands.predict import main
    from video_transformers.data import VideoDataModule
    from video_transformers.lit import VideoClassifier

    ckpt = make_checkpoint(embedded_root, tmp_path_factory.mktemp("ckpt"), sampling)
    model = VideoClassifier.load_from_checkpoint(ckpt, map_location="cpu", weights_only=False)
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)["datamodule_hyper_parameters"]
    assert saved["sampling"] == sampling
    dm = VideoDataModule(**{**saved, "test_clips": 2, "test_crops": 3, "num_workers": 0, "eval_batch_size": 5})
    trainer = L.Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False, accelerator="cpu")
    trainer.test(model, dm, verbose=False)
    tested = {row["path"]: row for row in csv.DictReader((tmp_path / "test_predictions.csv").open())}
    assert len(tested) == 12 and list(next(iter(tested.values())))[:5] == [
        "path",
        "label",
        "predicted",
        "top1",
        "top1_score",
    ]

    out = tmp_path / "preds.json"
    assert main(["--ckpt_path", str(ckpt), "--paths", *tested, "--views", "2x3", "--topk", "5", "--out", str(out)]) == 0
    predicted = json.loads(out.read_text())["predictions"]
    assert [p["video"] for p in predicted] == list(tested)
    for p in predicted:
        row = tested[p["video"]]
        assert p["top"][0]["label"] == row["predicted"] == row["top1"], p["video"]
        for r in p["top"]:
            assert r["label"] == row[f"top{r['rank']}"]
            assert abs(r["score"] - float(row[f"top{r['rank']}_score"])) < 1e-5, (p["video"], r)


def _bad_inputs(folder: Path, embedded_root: Path) -> dict[str, Path]:
    folder.mkdir()
    good = folder / "move_right.mp4"
    good.write_bytes((embedded_root / "videos/test/move_right_000.mp4").read_bytes())
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    notes = folder / "notes.txt"
    notes.write_text("hello")
    short = folder / "short.mp4"
    synthetic.write_mp4(short, synthetic.render("grow", np.random.default_rng(3), num_frames=6))
    return {"good": good, "notes": notes, "short": short}


def test_predict_folder_json_survives_bad_files(checkpoint, embedded_root, tmp_path, capsys):
    from video_transformers.commands.predict import main

    files = _bad_inputs(tmp_path / "in", embedded_root)
    out = tmp_path / "preds.json"
    code = main(
        [
            "--ckpt_path",
            str(checkpoint),
            "--paths",
            str(tmp_path / "in"),
            str(files["notes"]),
            str(tmp_path / "missing.mp4"),
            "--views",
            "2x3",
            "--topk",
            "3",
            "--out",
            str(out),
            "--per-view",
        ]
    )
    assert code == 1  # something failed, but the run went through every file
    doc = json.loads(out.read_text())
    predicted = {Path(p["video"]).name: p for p in doc["predictions"]}
    assert set(predicted) == {"move_right.mp4", "short.mp4"}  # the short video is padded by default
    failed = {Path(f["video"]).name: f["error"] for f in doc["failed"]}
    assert set(failed) == {"broken.mp4", "notes.txt", "missing.mp4"}
    assert "broken.mp4: cannot decode" in failed["broken.mp4"]
    assert "unsupported format '.txt'" in failed["notes.txt"] and "no such file" in failed["missing.mp4"]
    text = capsys.readouterr().out
    assert "2 of 5 inputs predicted, 3 failed" in text and "move_right.mp4" in text

    # scores are the softmax mean over the 2x3 views of the checkpoint's model
    lm = load_model(checkpoint)
    x, _, _ = view_clips(files["good"], lm.spec, clips=2, crops=3)
    probs = lm.logits(x).softmax(-1).mean(0)
    top = predicted["move_right.mp4"]["top"]
    assert [r["rank"] for r in top] == [1, 2, 3]
    assert top[0]["label"] == lm.class_names[int(probs.argmax())]
    assert top[0]["score"] == pytest.approx(float(probs.max()), abs=1e-5)
    assert len(predicted["move_right.mp4"]["views"]) == 6 and doc["clip"]["sampling_rate"] == 2


def test_predict_csv_and_short_video_error(checkpoint, embedded_root, tmp_path, capsys):
    from video_transformers.commands.predict import main

    files = _bad_inputs(tmp_path / "in", embedded_root)
    out = tmp_path / "preds.csv"
    code = main(
        [
            "--ckpt_path",
            str(checkpoint),
            "--paths",
            str(files["good"]),
            str(files["short"]),
            "--views",
            "1x1",
            "--topk",
            "2",
            "--out",
            str(out),
            "--short-video",
            "error",
        ]
    )
    assert code == 1
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["video", "rank", "label", "score"]
    assert [(Path(r["video"]).name, r["rank"]) for r in rows] == [("move_right.mp4", "1"), ("move_right.mp4", "2")]
    err = capsys.readouterr()
    assert "short.mp4: video is 0.38s long; a clip needs 1.00s" in err.err and "--short-video pad" in err.err


def test_expand_paths(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/x.mp4", "a/y.avi", "a/z.txt", "b.mp4"):
        (tmp_path / name).write_bytes(b"")
    files, problems = expand_paths([str(tmp_path / "a"), str(tmp_path / "*.mp4"), str(tmp_path / "nope*")])
    assert [f.name for f in files] == ["x.mp4", "y.avi", "b.mp4"]  # folders keep video extensions only
    assert problems == [(str(tmp_path / "nope*"), f"{tmp_path / 'nope*'}: no file matches this pattern")]


@pytest.mark.parametrize(("stride_s", "batch_size"), [(0.25, 3), (0.25, 5), (0.5, 4)])
def test_streaming_equals_recomputing_each_window(checkpoint, long_video, stride_s, batch_size):
    lm = load_model(checkpoint)
    frames = list(iter_grid_frames(long_video, lm.spec))
    assert len(frames) == 64  # 8 s at 16 fps, one frame in 2
    stride = stride_frames(lm.spec, stride_s, multiple=2)  # whole tubelets
    full = list(ClipWindowScorer(lm, batch_size=5).run(iter(frames), stride, long_video))
    stream = FactorisedEncoderStream(lm, batch_size=batch_size)  # batch 5: windows wait between flushes
    reused = list(stream.run(iter(frames), stride, long_video))
    assert [w for w, _ in full] == [w for w, _ in reused] and len(full) == (64 - 8) // stride + 1
    torch.testing.assert_close(
        torch.stack([lg for _, lg in reused]), torch.stack([lg for _, lg in full]), rtol=1e-5, atol=1e-5
    )
    assert stream.spatial_calls == 32  # every tubelet encoded once, not 4 times per window
    # and the full scorer equals the model on a clip cut by hand
    clip = torch.stack(frames[3 * stride : 3 * stride + 8], dim=1)[None]
    torch.testing.assert_close(full[3][1], lm.logits(clip)[0])


def test_window_cli_writes_timeline_and_plot(checkpoint, long_video, tmp_path, capsys):
    from video_transformers.commands.predict import main

    out = tmp_path / "timeline.csv"
    assert (
        main(
            [
                "--ckpt_path",
                str(checkpoint),
                "--paths",
                str(long_video),
                "--window",
                "--stride",
                "0.5",
                "--out",
                str(out),
                "--topk",
                "3",
            ]
        )
        == 0
    )
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == (64 - 8) // 4 + 1
    assert [float(r["start"]) for r in rows[:3]] == [0.0, 0.5, 1.0] and float(rows[0]["end"]) == 1.0
    scores = np.array([[float(r[c]) for c in synthetic.CLASS_NAMES] for r in rows])
    np.testing.assert_allclose(scores.sum(1), 1.0, atol=1e-4)
    png = tmp_path / "long.timeline.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    jout = tmp_path / "timeline.json"
    assert (
        main(
            [
                "--ckpt_path",
                str(checkpoint),
                "--paths",
                str(long_video),
                "--window",
                "--stride",
                "0.5",
                "--out",
                str(jout),
                "--no-stream",
            ]
        )
        == 0
    )
    doc = json.loads(jout.read_text())["predictions"][0]
    assert doc["streaming"] is False and len(doc["windows"]) == len(rows)
    np.testing.assert_allclose(np.array([w["scores"] for w in doc["windows"]]), scores, atol=2e-5)


def test_config_falls_through_to_the_trainer(monkeypatch):
    import video_transformers.cli as cli
    from video_transformers.commands import predict

    seen = []
    monkeypatch.setattr(cli, "run_cli", lambda args: seen.append(args))
    assert predict.main(["--config", "x.yaml", "--ckpt_path", "y.ckpt"]) == 0
    assert seen == [["predict", "--config", "x.yaml", "--ckpt_path", "y.ckpt"]]


def test_window_mode_short_video_pads_or_fails(checkpoint, embedded_root, tmp_path, capsys):
    from video_transformers.commands.predict import main

    files = _bad_inputs(tmp_path / "in", embedded_root)
    out = tmp_path / "short.json"
    assert main(["--ckpt_path", str(checkpoint), "--paths", str(files["short"]), "--window", "--out", str(out)]) == 0
    windows = json.loads(out.read_text())["predictions"][0]["windows"]
    assert [(w["start"], w["end"]) for w in windows] == [(0.0, 1.0)]  # one window, padded with the last frame
    assert (
        main(["--ckpt_path", str(checkpoint), "--paths", str(files["short"]), "--window", "--short-video", "error"])
        == 1
    )
    assert "short.mp4: video gives 3 sampled frames but a window needs 8" in capsys.readouterr().err


def test_vt_predict_dispatches_here(checkpoint, tmp_path, capsys):
    from video_transformers.cli import main

    with pytest.raises(SystemExit) as e:
        main(["predict", "--ckpt_path", str(checkpoint), "--paths", str(tmp_path / "none.mp4")])
    assert e.value.code == 1 and "0 of 1 inputs predicted, 1 failed" in capsys.readouterr().out
