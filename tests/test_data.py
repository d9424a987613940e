import logging
import shutil

import numpy as np
import pytest
import torch

from video_transformers.data import VideoDataError, VideoDataModule, synthetic
from video_transformers.data.sampling import clip_starts
from video_transformers.data.transforms import spatial_crop


def _dm(root, **kw):
    args = dict(dataset="csv", root=str(root), num_workers=0, batch_size=4, test_clips=4, test_crops=3)
    return VideoDataModule(**{**args, **kw})


def _copy(embedded_root, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(embedded_root, root)
    return root


def test_train_clips_from_real_mp4(embedded_root):
    dm = _dm(embedded_root)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape == (4, 3, 8, 32, 32) and batch["video"].dtype == torch.float32
    assert batch["label"].dtype == torch.int64 and batch["label"].max() < dm.num_classes
    assert torch.isfinite(batch["video"]).all() and batch["video"].std() > 0.1
    assert dm.class_names == synthetic.CLASS_NAMES


def test_test_views_cover_clips_and_crops(embedded_root):
    dm = _dm(embedded_root)
    dm.setup("test")
    ds = dm.test_dataloader().dataset
    n_videos = len(dm.checked_split("test")[0])
    assert len(ds) == n_videos * 12
    items = [ds[i] for i in range(12)]
    assert {it["video_index"] for it in items} == {0} and [it["view_index"] for it in items] == list(range(12))
    assert ds[12]["video_index"] == 1
    # left / centre / right crops of the same clip differ; the same crop of different clips differs
    left, centre, right = (items[i]["video"] for i in range(3))
    assert not torch.equal(left, right) and not torch.equal(left, centre)
    assert not torch.equal(items[0]["video"], items[3]["video"])


def test_clip_starts_are_evenly_spaced():
    # PyTorchVideo's ConstantClipsPerVideoSampler spaces starts by (duration - clip) / num_clips
    starts = clip_starts(duration=2.0, clip_duration=1.0, num_clips=4)
    np.testing.assert_allclose(starts, [0.0, 0.25, 0.5, 0.75], atol=1e-4)
    assert clip_starts(2.0, 1.0, 1) == [0.0]


def test_spatial_crop_positions():
    x = torch.arange(40.0).expand(3, 2, 40, 40)  # value = column index
    assert spatial_crop(x, 32, 0, 3)[..., 0, 0].unique().item() == 0
    assert spatial_crop(x, 32, 1, 3)[..., 0, 0].unique().item() == 4
    assert spatial_crop(x, 32, 2, 3)[..., 0, 0].unique().item() == 8
    tall = torch.arange(40.0)[:, None].expand(3, 2, 40, 32)  # value = row index
    assert spatial_crop(tall, 32, 2, 3)[..., 0, 0].unique().item() == 8


def _write_csv(root, rows, split="train"):
    (root / f"{split}.csv").write_text("path,label\n" + "\n".join(rows) + "\n")


def test_bad_videos_are_named_before_training(embedded_root, tmp_path):
    from video_transformers.data.synthetic import write_mp4

    root = _copy(embedded_root, tmp_path)
    good = "videos/train/grow_000.mp4"
    truncated = root / "videos/train/shrink_000.mp4"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 3])
    write_mp4(root / "videos/short.mp4", np.zeros((4, 40, 40, 3), np.uint8))  # 0.25 s < 1 s clip
    (root / "videos/not_a_video.mp4").write_bytes(b"hello")
    rows = [
        f"{good},grow",
        "videos/missing.mp4,grow",
        "videos/train/shrink_000.mp4,shrink",
        "videos/short.mp4,static",
        "videos/not_a_video.mp4,blink",
    ]
    _write_csv(root, rows)
    with pytest.raises(VideoDataError) as e:
        _dm(root).setup("fit")
    msg = str(e.value)
    assert "4 of 5 train videos are unusable" in msg
    assert "missing.mp4: video file not found" in msg and "train.csv:3" in msg
    assert "shrink_000.mp4: cannot decode" in msg
    assert "short.mp4: video is 0.25s long; a clip needs 1.00s" in msg
    assert "not_a_video.mp4" in msg


def test_skip_policy_warns_with_count_and_list(embedded_root, tmp_path, caplog):
    root = _copy(embedded_root, tmp_path)
    _write_csv(root, ["videos/train/grow_000.mp4,grow", "videos/gone.mp4,grow"])
    dm = _dm(root, on_bad_video="skip")
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert "skipping 1 of 2 train videos" in caplog.text and "gone.mp4" in caplog.text
    assert len(dm.train_dataloader().dataset) == 1


@pytest.mark.parametrize(
    "rows, expected",
    [
        (["videos/train/grow_000.mp4,jumping"], "train.csv:2: unknown label 'jumping'"),
        (["videos/train/grow_000.mp4,grow,extra"], "train.csv:2: expected 2 columns"),
        ([], "train.csv: no videos listed"),
    ],
)
def test_bad_annotations(embedded_root, tmp_path, rows, expected):
    root = _copy(embedded_root, tmp_path)
    _write_csv(root, rows)
    with pytest.raises(VideoDataError, match=expected):
        _dm(root).setup("fit")


def test_bad_header_and_missing_class_list(embedded_root, tmp_path):
    root = _copy(embedded_root, tmp_path)
    (root / "train.csv").write_text("file,class\nvideos/train/grow_000.mp4,grow\n")
    with pytest.raises(VideoDataError, match="train.csv:1: expected the header 'path,label'"):
        _dm(root).setup("fit")
    (root / "classes.txt").unlink()
    with pytest.raises(VideoDataError, match="classes.txt: class list not found"):
        _dm(root)


def test_invalid_sizes_fail_fast(embedded_root):
    with pytest.raises(ValueError, match="data.num_frames must be >= 1"):
        _dm(embedded_root, num_frames=0)
    with pytest.raises(ValueError, match="crop_size <= train_short_side"):
        _dm(embedded_root, crop_size=64)


def test_cached_clips_equal_decoded_clips(embedded_root):
    from video_transformers.data.dataset import ClipSource

    dm = _dm(embedded_root)
    records, infos = dm.checked_split("val")
    direct = ClipSource(records, infos, dm.clip_duration)
    cached = ClipSource(records, infos, dm.clip_duration, cache=True)
    for slots in ([0, 2, 4, 6], [5, 7, 9, 11, 13], [30, 31, 40, 99]):  # past the end: the last frame
        a, b = direct.frames(3, slots), cached.frames(3, slots)
        assert a.shape == b.shape and torch.equal(a, b)
