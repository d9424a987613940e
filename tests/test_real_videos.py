"""Videos as users have them, generated here with PyAV (tests/videos.py): phone rotation metadata, variable frame
rate, truncated downloads, long 720p files; frame selection that does not depend on the decode cache or the
backend; and the formats that already decoded correctly (10-bit, grey, full range, HEVC, AV1) staying so."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import av
import numpy as np
import pytest
import torch

from tests.conftest import REPO
from tests.videos import cfr_reencode, frame_numbers, pattern, psnr, write_frames, write_numbered, write_vfr
from video_transformers.data import VideoDataError, VideoDataModule
from video_transformers.data.annotations import VideoRecord
from video_transformers.data.dataset import ClipSource
from video_transformers.data.sampling import ClipSampler, Sampling
from video_transformers.data.video import _torchcodec_has_ffmpeg, probe, read_slots
from video_transformers.inference.clips import iter_grid_frames
from video_transformers.inference.loading import ClipSpec


def _backends() -> list[str]:
    found = ["pyav"]
    if importlib.util.find_spec("decord") is not None:
        found.append("decord")
    if importlib.util.find_spec("torchcodec") is not None and _torchcodec_has_ffmpeg():
        found.append("torchcodec")
    if os.environ.get("VT_REQUIRE_DECODERS") and len(found) < 3:
        pytest.fail(f"VT_REQUIRE_DECODERS is set but only {found} can decode here")
    return found


BACKENDS = _backends()


# -- rotation (issue 15, item 1) -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rotated(tmp_path_factory):
    """The same 6 frames stored landscape with a display matrix of 90, 180, 270 degrees, and with their pixels
    turned (what a player shows): 64x96 px, a size decord 0.6 copies without its frame-size bug."""
    root = tmp_path_factory.mktemp("rotation")
    frames = [np.roll(pattern((64, 96), seed=1, block=32), 16 * i, axis=1) for i in range(6)]
    lossless = {"qp": "0", "preset": "ultrafast"}
    pairs = {}
    for degrees in (90, 180, 270):
        tagged = write_frames(root / f"tag{degrees}.mp4", frames, rotation=degrees, options=lossless)
        # a display matrix of d degrees turns the picture d degrees counter-clockwise (FFmpeg's convention)
        turned = [np.ascontiguousarray(np.rot90(f, degrees // 90)) for f in frames]
        pairs[degrees] = (tagged, write_frames(root / f"pixels{degrees}.mp4", turned, options=lossless))
    return pairs


@pytest.mark.parametrize("backend", BACKENDS)
def test_rotation_metadata_is_applied_by_every_backend(rotated, backend):
    for degrees, (tagged, turned) in rotated.items():
        info = probe(tagged)
        assert info.rotation == degrees and (info.width, info.height) == ((96, 64) if degrees == 180 else (64, 96))
        a = read_slots(tagged, [0, 2, 5], info, decoder=backend)
        b = read_slots(turned, [0, 2, 5], probe(turned), decoder=backend)
        assert a.shape == b.shape, (degrees, backend)
        assert psnr(a, b) > 30, (degrees, backend, psnr(a, b))


# -- variable frame rate (item 2) ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vfr(tmp_path_factory):
    root = tmp_path_factory.mktemp("vfr")
    path, times = write_vfr(root / "vfr.mp4")  # 2 s at 10 fps, then 2 s at 30 fps
    return path, times, cfr_reencode(path, root / "cfr.mp4")


def _shown_at(times: list[float], t: float) -> int:
    """The source frame on screen at ``t`` seconds."""
    return max(k for k, s in enumerate(times) if s <= t + 1e-9)


def test_vfr_is_timed_by_timestamps(vfr):
    path, times, cfr = vfr
    info = probe(path)
    assert info.fps == 30 and info.frames == 120 and abs(info.duration - 4.0) < 1e-6  # 80 frames, 4 s
    spec = ClipSpec(8, 2, 16.0, 32, 32, (0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255))  # pixels pass unchanged
    grid = torch.stack(list(iter_grid_frames(path, spec)), dim=1)  # what vt predict --window slides over
    got = frame_numbers(grid)
    expected = [_shown_at(times, j * spec.frame_step) for j in range(len(got))]
    assert len(got) == 32  # 4 s, one grid frame every 0.125 s
    # every grid frame within one frame of the truth (the nearest 1/30 s slot); a frame-count clock would be
    # 4 s off by the end (80 frames at the nominal 20 fps)
    assert all(abs(times[g] - times[e]) <= 1 / 30 + 1e-6 for g, e in zip(got, expected, strict=True)), got
    assert got == frame_numbers(torch.stack(list(iter_grid_frames(cfr, spec)), dim=1))


@pytest.mark.parametrize(
    "sampling", [Sampling("time", 8, 2), Sampling("stride", 4, 10), Sampling("uniform", 8)], ids=str
)
def test_vfr_clips_equal_a_constant_rate_reencode(vfr, sampling):
    path, _, cfr = vfr
    sampler = ClipSampler(sampling, clip_duration=1.0)
    sources = [ClipSource([VideoRecord(p, 0, str(p))], [probe(p)], 1.0) for p in (path, cfr)]
    for clip in range(3):
        vfr_clip, cfr_clip = (sampler.eval_clip(s, 0, clip, 3) for s in sources)
        assert frame_numbers(vfr_clip) == frame_numbers(cfr_clip), (sampling, clip)


def test_vfr_without_the_cache_decodes_every_clip(vfr, tmp_path):
    path, _, _ = vfr
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos/vfr.mp4").write_bytes(path.read_bytes())
    (tmp_path / "classes.txt").write_text("a\n")
    (tmp_path / "test.csv").write_text("path,label\nvideos/vfr.mp4,a\n")
    dm = VideoDataModule(
        dataset="csv",
        root=str(tmp_path),
        num_workers=0,
        cache_videos=False,
        crop_size=32,
        eval_short_side=32,
        test_clips=4,
        test_crops=1,
    )
    dm.setup("test")
    views = [dm.test_dataloader().dataset[i]["video"] for i in range(4)]  # was: "decoded 0 frames"
    assert all(v.shape == (3, 8, 32, 32) for v in views)


# -- the decode cache picks the same frames (item 5) -----------------------------------------------------------
@pytest.mark.parametrize("name", ["cfr", "vfr"])
def test_cache_on_and_off_select_the_same_frames(vfr, tmp_path, name):
    path = vfr[0] if name == "vfr" else write_numbered(tmp_path / "cfr.mp4", range(37), rate=16)
    info = probe(path)
    off = ClipSource([VideoRecord(path, 0, "x")], [info], clip_duration=0.7)
    on = ClipSource([VideoRecord(path, 0, "x")], [info], clip_duration=0.7, cache=True)
    for sampling in (Sampling("time", 8, 2), Sampling("stride", 4, 3), Sampling("uniform", 6)):
        sampler = ClipSampler(sampling, clip_duration=0.7)  # 0.7 s: clip starts fall between frames
        for clip in range(5):
            slots = sampler.eval_slots(info, clip, 5)
            a, b = off.frames(0, slots), on.frames(0, slots)
            assert torch.equal(a, b), (name, sampling, clip)
        slots = sampler.train_slots(info)
        assert torch.equal(off.frames(0, slots), on.frames(0, slots))


# -- truncated downloads (item 4) ------------------------------------------------------------------------------
def test_truncated_faststart_mp4_is_named(tmp_path):
    whole = write_frames(
        tmp_path / "whole.mp4",
        [pattern((32, 48), seed=i) for i in range(100)],
        gop=10,
        container_options={"movflags": "+faststart"},  # the index (moov) before the data, as for streaming
    )
    assert abs(probe(whole).duration - 10.0) < 1e-6
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")
    cut.write_bytes(data[: len(data) // 2])  # the index survives: the header still says 10 s
    with pytest.raises(VideoDataError, match=r"cut\.mp4: truncated: stream says 10\.0 s, frames end at [1-6]\.\d s"):
        probe(cut)
    # cut just short of the end: accepted with the duration its frames have, and read to its last frame
    outcomes = set()
    for keep in (0.999, 0.995, 0.99, 0.98):
        cut.write_bytes(data[: int(len(data) * keep)])
        try:
            info = probe(cut)
        except VideoDataError as e:
            assert "truncated: stream says 10.0 s" in str(e)
            outcomes.add("truncated")
            continue
        assert info.duration > 9.4 and read_slots(cut, [info.frames - 2, info.frames - 1, 10**6], info).shape[1] == 3
        outcomes.add("read")
    assert "read" in outcomes


# -- long 720p files: memory bounded by the clip (item 3) -------------------------------------------------------
_MEASURE = """
import resource, sys
from video_transformers.commands.predict import main
ckpt, *videos = sys.argv[1:]
for video in videos:  # ru_maxrss only grows: a later, longer video may only raise it by what it needs more
    assert main(["--ckpt_path", ckpt, "--paths", video, "--views", "4x3"]) == 0
    print("PEAK_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)
"""


def test_predict_memory_does_not_grow_with_the_video(embedded_root, tmp_path):
    from tests.test_predict import make_checkpoint

    ckpt = make_checkpoint(embedded_root, tmp_path)  # the session's tiny ViViT-FE checkpoint
    frame = pattern((720, 1280), seed=2, block=80)
    files = {}
    for seconds in (1, 8):  # 720p at 5 fps; the old views mode decoded the whole file (~1.3 GB more at 8 s)
        frames = [np.roll(frame, 16 * i, axis=1) for i in range(5 * seconds)]
        files[seconds] = write_frames(tmp_path / f"{seconds}s.mp4", frames, gop=10, options={"preset": "ultrafast"})
    args = [str(ckpt), str(files[1]), str(files[1]), str(files[8])]  # the short one twice: warm
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", _MEASURE, *args], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    peaks = [int(line.split()[1]) for line in out.stdout.splitlines() if line.startswith("PEAK_KB")]
    assert peaks[2] - peaks[1] < 64 * 1024, peaks  # KB: 8x the video, not more memory


# -- formats that decoded correctly before: keep them (10-bit, grey, full range, HEVC, AV1) ----------------------
FORMATS = [
    ("x264_10bit.mp4", "libx264", "yuv420p10le", {"crf": "8", "preset": "ultrafast"}),
    ("x265_10bit.mkv", "libx265", "yuv420p10le", {"crf": "8", "x265-params": "log-level=error"}),
    ("full_range.mp4", "libx264", "yuvj420p", {"crf": "8", "preset": "ultrafast"}),
    ("grey.mkv", "ffv1", "gray", {}),
    ("av1.mkv", "libsvtav1", "yuv420p", {"crf": "10", "svtav1-params": "log-level=1"}),
]


@pytest.mark.parametrize(("name", "codec", "pix_fmt", "options"), FORMATS, ids=[f[0] for f in FORMATS])
def test_formats_decode_to_their_pixels(tmp_path, name, codec, pix_fmt, options):
    grey = pix_fmt == "gray"
    ramp = np.linspace(16, 235, 64)[None, :, None] + np.linspace(0, 40, 48)[:, None, None]  # smooth: survives 4:2:0
    ramp = np.repeat(ramp, 3, axis=2) if grey else np.concatenate([ramp, 255 - ramp, ramp[:, ::-1]], axis=2)
    image = ramp.clip(0, 255).astype(np.uint8)
    try:
        path = write_frames(tmp_path / name, [image] * 4, codec=codec, pix_fmt=pix_fmt, options=options)
    except (av.FFmpegError, ValueError) as e:  # an encoder this PyAV build lacks (UnknownCodecError)
        pytest.skip(f"this PyAV build cannot encode {codec} {pix_fmt}: {e}")
    got = read_slots(path, [0, 3], probe(path))
    assert got.dtype == torch.uint8 and psnr(got, torch.from_numpy(image).permute(2, 0, 1)[:, None]) > 35
