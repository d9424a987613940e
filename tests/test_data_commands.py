"""``vt data resize`` and ``vt data check`` in-process, on tiny real videos."""

from __future__ import annotations

import av
import numpy as np
import torch

from tests.test_datasets import write_video
from video_transformers.commands.data import main, target_size
from video_transformers.data.video import probe


def test_target_size():
    assert target_size(640, 360, 320) == (568, 320)
    assert target_size(360, 640, 320) == (320, 568)
    assert target_size(320, 240, 320) is None  # never upscaled


def test_resize_resumable_with_failures_listed(tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_video(src / "train/a/big.mp4", size=(48, 64))
    write_video(src / "train/b/big.webm", size=(64, 48), num_frames=6)
    write_video(src / "train/b/small.mp4", size=(24, 32))
    (src / "train/a/broken.mp4").write_bytes(b"not a video")
    (src / "train.csv").write_text("path,label\ntrain/a/big.mp4,a\n")
    assert main(["resize", str(src), str(dst), "--short-side", "32", "--workers", "2"]) == 1
    out = capsys.readouterr().out
    assert "2 resized, 1 copied" in out and "1 failed" in out and "broken.mp4: failed:" in out
    big = probe(dst / "train/a/big.mp4")
    assert (big.width, big.height) == (42, 32)  # short side 32, even sides
    info = probe(dst / "train/b/big.webm")
    assert (info.width, info.height, info.frames) == (32, 42, 6)
    assert (dst / "train/b/small.mp4").read_bytes() == (src / "train/b/small.mp4").read_bytes()
    assert (dst / "train.csv").read_text() == (src / "train.csv").read_text()
    assert not list(dst.rglob(".*partial*")) and not (dst / "train/a/broken.mp4").exists()
    # a second run only retries what is not finished
    before = (dst / "train/a/big.mp4").stat().st_mtime_ns
    assert main(["resize", str(src), str(dst), "--short-side", "32", "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert "0 resized, 0 copied" in out and "3 already done" in out and "1 failed" in out
    assert (dst / "train/a/big.mp4").stat().st_mtime_ns == before


def _keyframes(path):
    """Indices of the keyframe packets of ``path``'s video stream, and the stream's codec and rate."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        keys = [p.is_keyframe for p in c.demux(stream) if p.size]
        return [i for i, k in enumerate(keys) if k], len(keys), stream.codec_context.name, stream.average_rate


def test_resize_keyframe_interval_fps_and_codec(tmp_path, capsys):
    src = tmp_path / "src"
    write_video(src / "a.mp4", size=(48, 64), num_frames=40)
    assert _keyframes(src / "a.mp4")[0] == [0]  # libx264's default GOP (250) is longer than the video
    # --short-side 0 keeps the size; a re-encode option re-encodes a video that needs no resizing
    assert main(["resize", str(src), str(tmp_path / "k4"), "--short-side", "0", "--keyframe-interval", "4"]) == 0
    assert "1 re-encoded at their size" in capsys.readouterr().out
    keys, n, codec, _ = _keyframes(tmp_path / "k4/a.mp4")
    assert (keys, n, codec) == (list(range(0, 40, 4)), 40, "h264")
    assert main(["resize", str(src), str(tmp_path / "f"), "--short-side", "32", "--fps", "5", "--codec", "vp9"]) == 0
    keys, n, codec, rate = _keyframes(tmp_path / "f/a.mp4")
    assert (n, codec, rate) == (20, "vp9", 5)  # 4 s at 10 fps -> 20 frames at 5 fps
    info = probe(tmp_path / "f/a.mp4")
    assert (info.width, info.height) == (42, 32)


def test_resize_rejects_bad_encode_options(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    for bad, says in [
        (["--codec", "nope"], "--codec nope: FFmpeg has no encoder 'nope'"),
        (["--keyframe-interval", "0"], "--keyframe-interval must be >= 1"),
        (["--fps", "-1"], "--fps must be > 0"),
        (["--short-side", "1"], "--short-side must be >= 2"),
    ]:
        assert main(["resize", str(tmp_path / "src"), str(tmp_path / "dst"), *bad]) == 2
        assert says in capsys.readouterr().err


def _audio_only(path):
    with av.open(str(path), "w") as c:
        stream = c.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for _ in range(4):
            frame.pts = None
            c.mux(stream.encode(frame))
        c.mux(stream.encode())


def _zero_frames(path):
    c = av.open(str(path), "w")
    stream = c.add_stream("libx264", rate=10)
    stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
    c.start_encoding()
    c.close()


def test_check_lists_every_problem_with_counts(tmp_path, capsys):
    root = tmp_path / "ds"
    write_video(root / "ok.mp4", num_frames=12)
    write_video(root / "ok2.mp4", num_frames=12)
    write_video(root / "short.mp4", num_frames=3)
    (root / "trunc.mp4").write_bytes((root / "ok.mp4").read_bytes()[:300])
    _audio_only(root / "audio.mp4")
    _zero_frames(root / "zero.mkv")
    (root / "classes.txt").write_text("a\nb\n")
    rows = [
        "ok.mp4,a",
        "gone.mp4,a",
        "short.mp4,b",
        "trunc.mp4,a",
        "audio.mp4,b",
        "zero.mkv,a",
        "ok.mp4,b",
        "ok2.mp4,c",
        "ok2.mp4,a,extra",
    ]
    (root / "train.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    (tmp_path / "data.yaml").write_text(f"data:\n  dataset: csv\n  root: {root}\n  sampling: u8\n")
    assert main(["check", "--config", str(tmp_path / "data.yaml"), "--splits", "train", "val"]) == 1
    out = capsys.readouterr().out
    assert "[train] (train): 9 listed, 1 usable, 8 problems" in out
    expected = {
        "annotation: 2": ["train.csv:9: unknown label 'c'", "train.csv:10: expected 2 columns"],
        "missing: 1": ["train.csv:3: ", "gone.mp4: video file not found"],
        "unreadable: 1": ["trunc.mp4: cannot decode"],
        "zero-frames: 1": ["zero.mkv: decoded 0 frames"],
        "audio-only: 1": ["audio.mp4: no video stream"],
        "too-short: 1": ["short.mp4: video has 3 frames; u8 sampling needs >= 8"],
        "duplicate: 1": ["train.csv:8: duplicated id", "(first listed at", "train.csv:2)"],
    }
    for heading, parts in expected.items():
        assert heading in out, heading
        assert all(p in out for p in parts), parts
    assert "[val] cannot read annotations:" in out and "val.csv: annotation file not found" in out
    # the same from --root / --format, and a clean split exits 0
    (root / "train.csv").write_text("path,label\nok.mp4,a\nok2.mp4,b\n")
    assert main(["check", "--root", str(root), "--format", "csv", "--splits", "train"]) == 0
    assert "no problems found" in capsys.readouterr().out
    assert main(["check", "--root", str(tmp_path / "nowhere"), "--format", "csv"]) == 2
    assert "classes.txt: class list not found" in capsys.readouterr().err


def _hostile_folder(root):
    """A folder dataset as users have them: good videos beside a dangling symlink, a symlink loop, a GIF, a JPEG
    renamed .mp4 and a faststart mp4 cut in half."""
    from PIL import Image

    from tests.videos import pattern, write_frames

    for c in ("a", "b"):
        write_video(root / f"train/{c}/{c}1.mp4", num_frames=12)
    (root / "train/a/dangling.mp4").symlink_to(root / "gone/elsewhere.mp4")
    (root / "train/a/loop1.mp4").symlink_to("loop2.mp4")
    (root / "train/a/loop2.mp4").symlink_to("loop1.mp4")
    image = Image.fromarray(pattern((32, 48)))
    image.save(root / "train/b/anim.gif")
    image.save(root / "train/b/photo.jpg", format="JPEG")
    (root / "train/b/photo.jpg").rename(root / "train/b/photo.mp4")
    whole = write_frames(
        root / "whole.mp4",
        [pattern((32, 48), seed=i) for i in range(40)],
        gop=8,
        container_options={"movflags": "+faststart"},
    )
    (root / "train/b/half.mp4").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    whole.unlink()


def test_check_reports_every_problem_once_with_its_reason(tmp_path, capsys):
    root = tmp_path / "ds"
    _hostile_folder(root)
    assert (
        main(
            [
                "check",
                "--root",
                str(root),
                "--format",
                "folder",
                "--splits",
                "train",
                "--sampling",
                "stride",
                "--num-frames",
                "4",
            ]
        )
        == 1
    )
    out = capsys.readouterr().out
    expected = {
        "broken-link: 3": [
            f"a/dangling.mp4: dangling symlink to {root}/gone/elsewhere.mp4",
            "a/loop1.mp4: symlink loop",
            "a/loop2.mp4: symlink loop",
        ],
        "unsupported: 1": ["b/photo.mp4: not a video: a single mjpeg image"],
        "ignored: 1": ["b/anim.gif: not a video file (.gif; videos are"],
        "truncated: 1": ["b/half.mp4: truncated: stream says 4.0 s, frames end at"],
    }
    for heading, parts in expected.items():
        assert heading in out, (heading, out)
        assert all(p in out for p in parts), (parts, out)
    for name in ("dangling.mp4", "loop1.mp4", "loop2.mp4", "photo.mp4", "anim.gif", "half.mp4"):
        assert out.count(name) == 1, (name, out)  # each bad file once, its path once
    assert "[train] (train): 8 listed, 2 usable, 6 problems" in out
    assert "6 problems found: 3 broken-link, 1 unsupported, 1 ignored, 1 truncated" in out


def test_a_listed_image_and_symlinks_are_named(tmp_path, capsys):
    root = tmp_path / "ds"
    _hostile_folder(root)
    (root / "classes.txt").write_text("a\nb\n")
    rows = ["train/a/a1.mp4,a", "train/b/photo.mp4,b", "train/a/dangling.mp4,a", "train/a/loop1.mp4,a"]
    (root / "train.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    assert main(["check", "--root", str(root), "--format", "csv", "--splits", "train"]) == 1
    out = capsys.readouterr().out
    assert "train.csv:3: " in out and "photo.mp4: not a video: a single mjpeg image (format jpeg_pipe)" in out
    assert "train.csv:4: " in out and "dangling.mp4: dangling symlink" in out and "loop1.mp4: symlink loop" in out
    assert "3 problems found: 2 broken-link, 1 unsupported" in out


def test_files_that_are_not_videos_do_not_stop_a_run(tmp_path, caplog):
    from video_transformers.data import VideoDataModule

    root = tmp_path / "ds"
    for c in ("a", "b"):
        write_video(root / f"train/{c}/{c}1.mp4", num_frames=12)
    (root / "train/a/notes.txt").write_text("recorded on a phone")
    dm = VideoDataModule(dataset="folder", root=str(root), num_workers=0, sampling="stride", num_frames=4)
    with caplog.at_level("WARNING"):
        records, _ = dm.checked_split("train")
    assert len(records) == 2 and "1 files under" in caplog.text and "notes.txt: not a video file (.txt" in caplog.text


def test_one_bad_video_is_one_line_without_traceback(embedded_root, tmp_path, monkeypatch, capsys):
    import shutil

    import pytest

    from tests.conftest import REPO
    from video_transformers.cli import main as vt
    from video_transformers.data import VideoDataError

    root = tmp_path / "ds"
    shutil.copytree(embedded_root, root)
    (root / "videos/train/grow_000.mp4").write_bytes(b"not a video at all")
    monkeypatch.chdir(tmp_path)
    args = [
        "fit",
        "--config",
        str(REPO / "configs/vivit_factorised.yaml"),
        "--data.dataset",
        "csv",  # the embedded layout would rebuild a damaged copy
        "--data.root",
        str(root),
        "--data.num_workers",
        "0",
        "--trainer.max_steps",
        "1",
        "--trainer.logger",
        "false",
    ]
    with pytest.raises(SystemExit) as e:
        vt(args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("vt: ")]
    assert e.value.code == 1 and "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith(f"vt: {root}/train.csv:")  # the row, then the file and what is wrong with it
    assert f"{root}/videos/train/grow_000.mp4: cannot decode (InvalidDataError: Invalid data found" in lines[0]
    assert "(1 of 24 train videos are unusable; set data.on_bad_video=skip" in lines[0]
    with pytest.raises(VideoDataError, match="grow_000.mp4: cannot decode"):  # the traceback on request
        vt([*args, "--verbose"])


def test_resize_keeps_a_phone_videos_rotation(tmp_path):
    from tests.videos import pattern, psnr, write_frames
    from video_transformers.commands.data import resize_video
    from video_transformers.data.video import read_slots

    frames = [pattern((64, 96), seed=3, block=16)] * 3
    src = write_frames(tmp_path / "phone.mp4", frames, rotation=90, options={"qp": "0", "preset": "ultrafast"})
    assert resize_video(src, tmp_path / "small.mp4", short_side=32) == "resized"
    small = probe(tmp_path / "small.mp4")
    assert small.rotation == 90 and (small.width, small.height) == (32, 48)  # still shown portrait
    a = read_slots(src, [0], probe(src)).float()
    b = read_slots(tmp_path / "small.mp4", [0], small).float()
    shrunk = torch.nn.functional.interpolate(a.transpose(0, 1), size=(48, 32), mode="area").transpose(0, 1)
    assert psnr(shrunk, b) > 25
