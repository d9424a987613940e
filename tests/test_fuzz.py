"""Hostile and broken inputs: random, truncated, bit-flipped and spliced video bytes, and malformed annotation
files, end either in valid output or in this project's :class:`VideoDataError` naming the file -- never in
another exception, a crash or a hang. Deterministic (``derandomize``), bounded in examples and time; a decode that
hangs past the watchdog aborts the run with every thread's traceback. ``pytest -s tests/test_fuzz.py`` prints
the outcome counts."""

from __future__ import annotations

import collections
import faulthandler
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_datasets import CODECS, FAKE_COPIES, write_video
from video_transformers.data import VideoDataError, VideoDataModule
from video_transformers.data.annotations import Annotations, VideoRecord, keep_within_root
from video_transformers.data.dataset import ClipSource
from video_transformers.data.formats import get_format
from video_transformers.data.sampling import ClipSampler, Sampling
from video_transformers.data.video import decode_clip, decode_frames, probe
from video_transformers.safety import limits

OUTCOMES: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # the same inputs on every run: CI failures reproduce
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    for name, counts in OUTCOMES.items():
        listing = ", ".join(f"{k} {v}" for k, v in counts.most_common())
        print(f"\n[fuzz] {name}: {sum(counts.values())} inputs: {listing}")


@contextmanager
def watchdog(seconds: float = 60.0):
    """Abort (with tracebacks) rather than hang: the fuzz test fails loudly if one input blocks decoding."""
    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


# -- video bytes ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def seed_videos(tmp_path_factory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("fuzz_seeds")
    paths = [write_video(root / f"v{ext}", num_frames=16, fps=8) for ext in (".mp4", ".webm", ".avi", ".mkv")]
    return {p.suffix: p.read_bytes() for p in paths}


def mutate(data: st.DataObject, raw: bytes) -> tuple[str, bytes]:
    how = data.draw(st.sampled_from(["truncate", "bitflip", "overwrite", "random", "splice", "empty"]), label="how")
    b = bytearray(raw)
    if how == "truncate":
        return how, bytes(b[: data.draw(st.integers(0, len(b) - 1), label="cut")])
    if how == "bitflip":
        for pos in data.draw(st.lists(st.integers(0, len(b) - 1), min_size=1, max_size=64), label="flips"):
            b[pos] ^= 1 << data.draw(st.integers(0, 7))
        return how, bytes(b)
    if how == "overwrite":  # a run of random bytes somewhere inside (headers, sample tables, frame data)
        start = data.draw(st.integers(0, len(b) - 1), label="at")
        chunk = data.draw(st.binary(min_size=1, max_size=256), label="chunk")
        b[start : start + len(chunk)] = chunk
        return how, bytes(b[: len(raw)])
    if how == "random":
        return how, data.draw(st.binary(max_size=4096), label="bytes")
    if how == "splice":  # the head of one file with a tail from elsewhere in it
        cut, tail = data.draw(st.integers(0, len(b)), label="cut"), data.draw(st.integers(0, len(b)), label="tail")
        return how, bytes(b[:cut] + b[tail:])
    return how, b""


def decode_everything(path: Path) -> str:
    """Probe, decode frames by index (seeking) and a time window, through the dataset's clip source too;
    return the outcome. Only :class:`VideoDataError` may escape the decoding code."""
    try:
        info = probe(path)
        frames = decode_frames(path, [0, 5, 3, 40])
        assert frames.dtype == torch.uint8 and frames.shape[:2] == (3, 4), frames.shape
        clip = decode_clip(path, 0.0, 1.0)
        assert clip.dtype == torch.uint8 and clip.shape[0] == 3 and clip.shape[1] >= 1
        source = ClipSource([VideoRecord(path, 0, "fuzz")], [info], clip_duration=1.0, cache=True)
        time_clip = ClipSampler(Sampling("time", 4, 2), 1.0).eval_clip(source, 0, 0, 1)
        assert source.frames(0, [0, 1]).shape[1] == 2 and time_clip.shape[:2] == (3, 4)
        return "valid"
    except VideoDataError as e:
        assert str(path) in str(e), f"the message must name the file: {e}"
        return f"VideoDataError({e.kind})"


@FUZZ
@given(data=st.data())
def test_mutated_video_bytes_end_in_output_or_our_error(seed_videos, tmp_path_factory, data):
    ext = data.draw(st.sampled_from(sorted(seed_videos)), label="format")
    how, blob = mutate(data, seed_videos[ext])
    path = tmp_path_factory.mktemp("fuzz") / f"input{ext}"
    path.write_bytes(blob)
    with watchdog():
        outcome = decode_everything(path)
    OUTCOMES["video bytes"][f"{how}: {outcome}"] += 1


def test_declared_frame_size_over_the_limit_is_refused_before_decoding(seed_videos, tmp_path, monkeypatch):
    path = tmp_path / "v.mp4"
    path.write_bytes(seed_videos[".mp4"])
    monkeypatch.setattr(limits, "LIMITS", limits.SizeLimits(max_frame_pixels=40 * 48 - 1))
    with pytest.raises(VideoDataError, match=r"v\.mp4: frames are 48x40 px, over the limit of 1,919 pixels"):
        probe(path)
    with pytest.raises(VideoDataError, match="over the limit"):
        decode_frames(path, [0, 3])


def test_cache_keeps_videos_under_the_budget_only(seed_videos, tmp_path, monkeypatch, caplog):
    path = tmp_path / "v.mp4"
    path.write_bytes(seed_videos[".mp4"])
    rec = VideoRecord(path, 0, "test")
    source = ClipSource([rec], [probe(path)], clip_duration=1.0, cache=True)
    monkeypatch.setattr(limits, "LIMITS", limits.SizeLimits(max_cached_video_bytes=1000))
    with caplog.at_level("INFO"):
        clip = source.frames(0, [0, 2, 4])
    assert not source._videos and "over the cache budget" in caplog.text  # decoded per clip, nothing kept
    monkeypatch.setattr(limits, "LIMITS", limits.SizeLimits())
    assert torch.equal(ClipSource([rec], [probe(path)], 1.0, cache=True).frames(0, [0, 2, 4]), clip)


# -- annotation files -------------------------------------------------------------------------------------
VIDEO_SUFFIXES = set(CODECS)


def _annotation_files(root: Path) -> list[str]:
    """The files of a fake copy a user could hand us other than videos: what the layout's reader parses."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.suffix not in VIDEO_SUFFIXES)


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> dict[str, Path]:
    """A fake copy per registered layout (tests/test_datasets.py's ``FAKE_COPIES``) that has annotation files;
    names sharing a fake copy (kinetics400/600/700: one reader) are fuzzed once, as the first of them."""
    out: dict[str, Path] = {}
    made = set()
    for name, maker in sorted(FAKE_COPIES.items()):
        if maker not in made:
            made.add(maker)
            root = maker(tmp_path_factory.mktemp(name))
            if _annotation_files(root):
                out[name] = root
    return out


def fuzz_text(data: st.DataObject, original: bytes) -> bytes:
    how = data.draw(st.sampled_from(["text", "lines", "bytes", "truncate", "json"]), label="how")
    if how == "text":  # any unicode, commas, quotes, tabs, NULs, '..' paths
        alphabet = st.sampled_from(list(",. \t\n\"'/\\:;[]{}\x00-_09aAzé…../..") + ["../", "/etc/passwd", "\r\n"])
        return "".join(data.draw(st.lists(alphabet, max_size=300), label="chars")).encode()
    if how == "lines":  # the real file's lines dropped, repeated, reordered, or cut in the middle
        lines = original.decode().splitlines()
        picked = data.draw(st.lists(st.sampled_from(lines or [""]), max_size=12), label="lines")
        cut = data.draw(st.integers(0, 40), label="cut")
        return "\n".join(line[: cut or None] for line in picked).encode()
    if how == "bytes":
        return data.draw(st.binary(max_size=600), label="bytes")
    if how == "truncate":
        return original[: data.draw(st.integers(0, max(0, len(original) - 1)), label="cut")]
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=12,
    )
    return json.dumps(data.draw(json_values, label="json")).encode()


@FUZZ
@given(data=st.data())
def test_malformed_annotation_files_end_in_records_or_our_error(layouts, tmp_path_factory, data):
    name = data.draw(st.sampled_from(sorted(layouts)), label="layout")
    split = "train"
    root = tmp_path_factory.mktemp("ann") / name
    shutil.copytree(layouts[name], root)
    target = root / data.draw(st.sampled_from(_annotation_files(root)), label="file")
    target.write_bytes(fuzz_text(data, target.read_bytes()))
    fmt = get_format(name, split_id=1)
    try:
        names = fmt.class_names(root)
        assert names and all(isinstance(n, str) for n in names)
        ann = keep_within_root(fmt.read(root, split, names), root)
        assert isinstance(ann, Annotations)
        assert all(0 <= r.label < len(names) for r in ann.records)
        assert all(Path(r.path).resolve().is_relative_to(root.resolve()) for r in ann.records)
        outcome = f"{len(ann.records)} records, {len(ann.problems)} bad rows" if ann.records else "no records"
        if ann.records or ann.problems:  # the whole pipeline: every listed video probed, nothing raised but ours
            dm = VideoDataModule(dataset=name, root=str(root), num_workers=0, num_frames=4, sampling_rate=1)
            scan = dm.scan(split, progress=False)
            outcome += f"; scan: {len(scan.records)} usable"
    except VideoDataError as e:
        outcome = f"VideoDataError({e.kind})"
    OUTCOMES[f"annotation files ({name})"][outcome.split(",")[0] if "records" in outcome else outcome] += 1


# -- paths in annotation files stay under the root ---------------------------------------------------------
def test_annotation_paths_cannot_leave_the_root(tmp_path):
    root = tmp_path / "ds"
    write_video(root / "videos" / "ok.mp4")
    write_video(tmp_path / "outside.mp4")
    (root / "classes.txt").write_text("a\n")
    rows = ["videos/ok.mp4", "../outside.mp4", str(tmp_path / "outside.mp4"), "videos/../../outside.mp4"]
    (root / "train.csv").write_text("path,label\n" + "".join(f"{r},a\n" for r in rows))
    dm = VideoDataModule(dataset="csv", root=str(root), num_workers=0, num_frames=4, sampling_rate=1)
    scan = dm.scan("train", progress=False)
    assert [r.path.name for r in scan.records] == ["ok.mp4"]
    outside = scan.problems["annotation"]
    assert len(outside) == 3 and all("is outside the dataset root" in m for m in outside)
    assert [m.split(": ")[0].rsplit(":", 1)[-1] for m in outside] == ["3", "4", "5"]  # the rows are named
    with pytest.raises(
        VideoDataError, match=r"(?s)3 of 4 train videos are unusable.*train.csv:3: .*outside\.mp4 is out"
    ):
        dm.checked_split("train")
    trusted = VideoDataModule(
        dataset="csv", root=str(root), num_workers=0, num_frames=4, sampling_rate=1, allow_outside_root=True
    )
    assert len(trusted.scan("train", progress=False).records) == 4


# -- data-loader workers: failures name the file ------------------------------------------------------------
def _loader_dm(root: Path, **kw) -> VideoDataModule:
    dm = VideoDataModule(
        dataset="csv", root=str(root), num_workers=1, batch_size=2, num_frames=4, sampling_rate=1, **kw
    )
    dm.setup("fit")
    return dm


def test_a_worker_that_dies_is_reported_with_the_file_it_was_decoding(embedded_root, monkeypatch):
    dm = _loader_dm(embedded_root)
    records, _ = dm.checked_split("train")
    victim = records[3].path
    real = ClipSource.frames

    def crash(self, i, slots, frame_fn=None):  # a decoder library crashing the process, as a segfault would
        if self.records[i].path == victim:
            os._exit(3)
        return real(self, i, slots, frame_fn)

    monkeypatch.setattr(ClipSource, "frames", crash)  # before the workers fork: they inherit it
    loader = dm.train_dataloader()
    with pytest.raises(VideoDataError, match=rf"worker died while decoding worker 0: {victim}.*exited unexpectedly"):
        for _ in loader:
            pass


def test_an_error_raised_in_a_worker_arrives_as_one_line_naming_the_file(embedded_root, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(embedded_root, root)
    dm = _loader_dm(root)
    victim = dm.checked_split("train")[0][2].path
    victim.write_bytes(victim.read_bytes()[:300])  # damaged after the check pass
    with pytest.raises(VideoDataError) as err:
        for _ in dm.train_dataloader():
            pass
    text = str(err.value)
    assert text.startswith(f"{victim}: cannot decode") and text.endswith("(in data-loader worker 0)"), text
    assert "Traceback" not in text and "\n" not in text


def test_a_hung_decode_stops_at_the_loader_timeout_naming_the_file(embedded_root, monkeypatch):
    dm = _loader_dm(embedded_root, loader_timeout=3.0)
    victim = dm.checked_split("train")[0][1].path
    real = ClipSource.frames

    def hang(self, i, slots, frame_fn=None):
        if self.records[i].path == victim:
            time.sleep(120)  # a decoder stuck on a damaged file
        return real(self, i, slots, frame_fn)

    monkeypatch.setattr(ClipSource, "frames", hang)
    started = time.perf_counter()
    with pytest.raises(VideoDataError, match=rf"no batch within data.loader_timeout while decoding worker 0: {victim}"):
        for _ in dm.train_dataloader():
            pass
    assert time.perf_counter() - started < 60
    with pytest.raises(ValueError, match="data.loader_timeout must be >= 0"):
        VideoDataModule(dataset="csv", root=str(embedded_root), loader_timeout=-1)
