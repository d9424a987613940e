"""Frame sampling by name: presets, stride and TSN segment indices, and decoding only the frames asked for."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_datasets import write_video
from video_transformers.data import VideoDataError, VideoDataModule
from video_transformers.data.annotations import VideoRecord
from video_transformers.data.dataset import ClipSource
from video_transformers.data.sampling import (
    ClipSampler,
    Sampling,
    parse_sampling,
    random_stride_start,
    segment_bounds,
    stride_indices,
    stride_starts,
    uniform_eval_indices,
    uniform_train_indices,
)
from video_transformers.data.video import _torchcodec_has_ffmpeg, decode_clip, decode_frames, probe


def test_presets_and_specs():
    assert parse_sampling("timesformer", num_frames=8, sampling_rate=2) == Sampling("stride", 8, 32)
    assert parse_sampling("vivit", num_frames=32, sampling_rate=4) == Sampling("stride", 32, 2)
    assert parse_sampling("uniformerv2", num_frames=8, sampling_rate=4) == Sampling("uniform", 8)
    assert parse_sampling("u16", num_frames=16, sampling_rate=4) == Sampling("uniform", 16)
    assert parse_sampling("stride", num_frames=4, sampling_rate=3) == Sampling("stride", 4, 3)
    assert parse_sampling("time", num_frames=4, sampling_rate=3).mode == "time"
    with pytest.raises(ValueError, match="'vivit' takes 32 frames but data.num_frames is 8"):
        parse_sampling("vivit", num_frames=8, sampling_rate=2)
    with pytest.raises(ValueError, match="expected time, stride, uniform"):
        parse_sampling("8by32", num_frames=8, sampling_rate=2)


def test_stride_indices_and_eval_starts():
    assert stride_indices(10, 8, 32, total=300) == [10, 42, 74, 106, 138, 170, 202, 234]
    assert stride_indices(0, 4, 8, total=20) == [0, 8, 16, 19]  # clamped to the last frame
    # span 1 + 7 * 32 = 225 of 300 frames: delta 75, clips start at 75 * k / K (official TimeSformer)
    assert stride_starts(300, 8, 32, 1) == [0]
    assert stride_starts(300, 8, 32, 3) == [0, 25, 50]
    assert stride_starts(100, 8, 32, 3) == [0, 0, 0]
    assert random_stride_start(100, 8, 32) == 0


@settings(max_examples=60, deadline=None)
@given(total=st.integers(8, 2000), n=st.integers(1, 16), clips=st.integers(1, 5))
def test_uniform_segments(total, n, clips):
    bounds = segment_bounds(total, n)
    assert bounds[0][0] == 0 and bounds[-1][1] == total - 1
    train = uniform_train_indices(total, n)
    assert len(train) == n and all(a <= i <= b for i, (a, b) in zip(train, bounds, strict=True))
    views = [uniform_eval_indices(total, n, k, clips) for k in range(clips)]
    for idx in views:
        assert len(idx) == n and idx == sorted(idx) and 0 <= idx[0] and idx[-1] < total
        assert all(a <= i <= b for i, (a, b) in zip(idx, bounds, strict=True))
    if total >= 2 * n * (clips + 1):  # segments long enough that every view differs
        assert len({tuple(v) for v in views}) == clips


def test_uniform_single_clip_is_segment_centres():
    # 81 frames, 8 segments of 10: centres 5, 15, ..., 75
    assert uniform_eval_indices(81, 8) == [5, 15, 25, 35, 45, 55, 65, 75]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("sampling")
    return {ext: write_video(root / f"v{ext}", num_frames=40, fps=10) for ext in (".mp4", ".webm")}


@pytest.mark.parametrize("ext", [".mp4", ".webm"])
def test_decode_frames_equals_full_decode(videos, ext):
    path = videos[ext]
    full = decode_clip(path, 0.0, 10.0)
    assert full.shape[1] == 40
    for indices in ([0, 1, 2], [3, 17, 39], [39, 0, 20, 20], [5, 45], list(range(0, 40, 5))):
        for gap in (4, 64):  # seek between frames, or decode through
            got = decode_frames(path, indices, seek_gap=gap)
            assert torch.equal(got, full[:, [min(i, 39) for i in indices]]), (ext, indices, gap)


def test_samplers_pick_the_expected_frames(videos):
    path = videos[".mp4"]
    info = probe(path)
    source = ClipSource([VideoRecord(path, 0, "x")], [info], clip_duration=1.0)
    base = decode_frames(path, [0]).float().mean()

    def brightness(clip):  # which frame each is: write_video makes frame i 6 * i brighter than frame 0
        return ((clip.float().mean((0, 2, 3)) - base) / 6).round().long().tolist()

    stride = ClipSampler(Sampling("stride", 4, 5), 1.0)
    got = brightness(stride.train_clip(source, 0))
    assert [b - got[0] for b in got] == [0, 5, 10, 15] and 0 <= got[0] <= 40 - 16
    assert brightness(stride.eval_clip(source, 0, 1, 2)) == [12, 17, 22, 27]  # delta 24, start 12
    uniform = ClipSampler(Sampling("uniform", 4), 1.0)
    assert brightness(uniform.eval_clip(source, 0, 0, 1)) == uniform_eval_indices(40, 4)
    train = brightness(uniform.train_clip(source, 0))
    assert all(a <= i <= b for i, (a, b) in zip(train, segment_bounds(40, 4), strict=True))
    cached = ClipSource([VideoRecord(path, 0, "x")], [info], clip_duration=1.0, cache=True)
    assert torch.equal(cached.frames(0, [3, 9, 39, 50]), source.frames(0, [3, 9, 39, 50]))


def test_datamodule_u8_and_too_short(embedded_root, tmp_path):
    dm = VideoDataModule(
        dataset="csv", root=str(embedded_root), num_workers=0, batch_size=2, sampling="u8", test_clips=2, test_crops=1
    )
    dm.setup("test")
    ds = dm.test_dataloader().dataset
    assert ds[0]["video"].shape == (3, 8, 32, 32) and not torch.equal(ds[0]["video"], ds[1]["video"])
    write_video(tmp_path / "short.mp4", num_frames=6)
    (tmp_path / "classes.txt").write_text("a\n")
    (tmp_path / "train.csv").write_text("path,label\nshort.mp4,a\n")
    with pytest.raises(VideoDataError, match="short.mp4: video has 6 frames; u8 sampling needs >= 8"):
        VideoDataModule(dataset="csv", root=str(tmp_path), num_workers=0, sampling="u8").checked_split("train")


@pytest.fixture(scope="module")
def decoder_videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("decoders")
    sizes = [(48, 64), (256, 340), (40, 40)]  # 340x256: Kinetics' usual size; 40x40: the embedded dataset's
    return [
        write_video(root / f"v{w}x{h}{ext}", num_frames=40, fps=10, size=(h, w))
        for h, w in sizes
        for ext in (".mp4", ".webm")
    ]


@pytest.mark.parametrize("backend", ["decord", "torchcodec"])
def test_optional_decoders(backend, decoder_videos, embedded_root):
    installed = importlib.util.find_spec(backend) is not None
    if not installed or (backend == "torchcodec" and not _torchcodec_has_ffmpeg()):
        why = f"needs the {backend} package" if not installed else "cannot load FFmpeg"
        with pytest.raises(VideoDataError, match=f"data.decoder='{backend}'.*{why}"):
            VideoDataModule(dataset="csv", root=str(embedded_root), decoder=backend)
        if os.environ.get("VT_REQUIRE_DECODERS"):  # CI installs both: a skip there would hide a broken backend
            pytest.fail(f"data.decoder={backend!r} is unusable here ({why}) but VT_REQUIRE_DECODERS is set")
        pytest.skip(f"{backend} is unusable here ({why}): only the error for selecting it is tested")
    indices = [0, 7, 21, 39, 39, 3]
    for path in decoder_videos:
        assert torch.equal(decode_frames(path, indices, decoder=backend), decode_frames(path, indices)), path
    dm = VideoDataModule(
        dataset="csv", root=str(embedded_root), decoder=backend, num_workers=0, cache_videos=False, test_crops=1
    )
    dm.setup("test")
    reference = VideoDataModule(dataset="csv", root=str(embedded_root), num_workers=0, cache_videos=False, test_crops=1)
    reference.setup("test")
    for i in (0, 5):
        assert torch.equal(dm.test_dataloader().dataset[i]["video"], reference.test_dataloader().dataset[i]["video"])


def test_decord_size_bug_is_reported_with_the_file(videos):
    """decord 0.6's batch copy fails on some frame sizes (48x40 here): the error names the file, never a crash."""
    if importlib.util.find_spec("decord") is None:
        pytest.skip("decord is not installed")
    with pytest.raises(VideoDataError, match=r"v\.mp4: cannot decode frames 0\.\.39 \(DECORDError"):
        decode_frames(videos[".mp4"], [0, 39], decoder="decord")


def test_torchcodec_without_ffmpeg_is_refused_up_front(monkeypatch, embedded_root):
    if importlib.util.find_spec("torchcodec") is None:
        pytest.skip("torchcodec is not installed")
    import torchcodec._core.ops as ops

    monkeypatch.setattr(ops, "_FFMPEG_AVAILABLE", False)
    with pytest.raises(VideoDataError, match="torchcodec is installed but cannot load FFmpeg"):
        VideoDataModule(dataset="csv", root=str(embedded_root), decoder="torchcodec")
