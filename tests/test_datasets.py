"""Dataset layouts on tiny fake copies made of real mp4 / webm / avi files: Kinetics (official CSVs and list
files), Something-Something v2, UCF101, HMDB51, folders; bad rows, duplicates, run-time skips; configs/data."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import av
import lightning as L
import numpy as np
import pytest
import torch
import yaml

from tests.conftest import REPO
from video_transformers.data import VideoDataError, VideoDataModule
from video_transformers.data.datamodule import SkippedVideoReport
from video_transformers.data.formats import DATASETS

CODECS = {".mp4": "libx264", ".webm": "libvpx-vp9", ".avi": "mpeg4", ".mkv": "libx264"}


def write_video(
    path: Path, num_frames: int = 12, size: tuple[int, int] = (40, 48), fps: int = 10, seed: int = 0
) -> Path:
    """A real video whose frame ``i`` has brightness ``6 * i`` plus a little per-video texture (no clipping
    below 40 frames)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = size
    texture = np.random.default_rng(seed).integers(0, 16, (h, w, 3))
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(CODECS[path.suffix], rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if path.suffix == ".webm":
            stream.options = {"deadline": "realtime", "cpu-used": "8", "crf": "20", "b": "0"}
        for i in range(num_frames):
            frame = np.clip(texture + 6 * i, 0, 255).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def _dm(root, dataset, **kw):
    args = dict(
        dataset=dataset,
        root=str(root),
        num_workers=0,
        batch_size=2,
        num_frames=4,
        sampling="stride",
        sampling_rate=2,
        crop_size=32,
        train_short_side=(32, 40),
        eval_short_side=32,
        test_clips=1,
        test_crops=1,
    )
    return VideoDataModule(**{**args, **kw})


def _batch_ok(dm, split="train"):
    dm.setup("fit" if split == "train" else "test")
    loader = dm.train_dataloader() if split == "train" else dm.test_dataloader()
    batch = next(iter(loader))
    assert batch["video"].shape[1:] == (3, 4, 32, 32) and batch["video"].dtype == torch.float32
    assert batch["label"].dtype == torch.int64 and int(batch["label"].max()) < dm.num_classes
    return batch


# -- Kinetics -----------------------------------------------------------------------------------------------
K_ROWS = [("air drumming", "aaaaaaaaaaa", 0, 10), ("abseiling", "bbbbbbbbbbb", 5, 15), ("zumba", "ccccccccccc", 30, 40)]


def make_kinetics(root: Path, header="label,youtube_id,time_start,time_end,split") -> Path:
    for file, tag in (("train.csv", "train"), ("validate.csv", "val")):
        lines = [header]
        for n, (label, yt, s, e) in enumerate(K_ROWS):
            lines.append(f"{label},{yt}{tag[0]},{s},{e},{tag}")
            # spaces in labels become underscores in folder names in the usual downloads
            write_video(root / tag / label.replace(" ", "_") / f"{yt}{tag[0]}_{s:06d}_{e:06d}.mp4", seed=n)
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / file).write_text("\n".join(lines) + "\n")
    return root


def test_kinetics_official_csv(tmp_path):
    root = make_kinetics(tmp_path / "k400")
    dm = _dm(root, "kinetics400", test_split="val")
    assert dm.class_names == ["abseiling", "air drumming", "zumba"]  # sorted labels of train.csv
    records, _ = dm.checked_split("train")
    assert [r.video_id for r in records] == [
        "aaaaaaaaaaat_000000_000010",
        "bbbbbbbbbbbt_000005_000015",
        "ccccccccccct_000030_000040",
    ]
    assert records[0].path == root / "train/air_drumming/aaaaaaaaaaat_000000_000010.mp4"
    assert [r.label for r in records] == [1, 0, 2]
    _batch_ok(dm)
    _batch_ok(dm, "test")  # the test loader reads validate.csv


def test_kinetics_list_files_and_classes_txt(tmp_path):
    root = make_kinetics(tmp_path / "k400")
    for f in (root / "annotations").glob("*.csv"):
        f.unlink()
    (root / "classes.txt").write_text("zumba\nabseiling\nair drumming\n")
    rows = ["train/air_drumming/aaaaaaaaaaat_000000_000010.mp4 2", "train/zumba/ccccccccccct_000030_000040.mp4 zumba"]
    (root / "annotations" / "train_list.txt").write_text("\n".join(rows) + "\n")
    dm = _dm(root, "kinetics600")
    records, _ = dm.checked_split("train")
    assert dm.class_names[0] == "zumba" and [r.label for r in records] == [2, 0]


def test_kinetics_bad_columns_unknown_labels_and_duplicates(tmp_path):
    root = make_kinetics(tmp_path / "k400")
    csv = root / "annotations" / "train.csv"
    csv.write_text("label,ytid,start,end\nabseiling,x,0,10\n")
    with pytest.raises(VideoDataError, match=r"train.csv:1: missing columns \['youtube_id', 'time_start'"):
        _dm(root, "kinetics400")
    make_kinetics(root)
    (root / "classes.txt").write_text("abseiling\nair drumming\nzumba\n")
    val = root / "annotations" / "validate.csv"
    val.write_text(val.read_text() + "juggling,ddddddddddd,0,10,val\nabseiling,bbbbbbbbbbbv,5,15,val\n")
    with pytest.raises(VideoDataError) as e:
        _dm(root, "kinetics400").checked_split("val")
    msg = str(e.value)
    assert "validate.csv:5: unknown label 'juggling'" in msg
    assert (
        "validate.csv:6: duplicated id 'bbbbbbbbbbbv_000005_000015' (first listed at" in msg and "validate.csv:3" in msg
    )


# -- Something-Something v2 ------------------------------------------------------------------------------
SS_LABELS = {
    "Pushing something from left to right": "0",
    "Pushing something from right to left": "1",
    "Putting something on a surface": "2",
}


def make_ssv2(root: Path) -> Path:
    (root / "labels.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "labels.json").write_text(json.dumps(SS_LABELS))
    templates = [
        "Pushing [something] from left to right",
        "Pushing [something] from right to left",
        "Putting [something] on a surface",
    ]
    for file, ids in (("train.json", [11, 12, 13]), ("validation.json", [21, 22])):
        entries = [
            {"id": str(i), "label": "pushing a cup", "template": templates[n % 3], "placeholders": ["cup"]}
            for n, i in enumerate(ids)
        ]
        (root / file).write_text(json.dumps(entries))
        for n, i in enumerate(ids):
            write_video(root / "20bn-something-something-v2" / f"{i}.webm", num_frames=10, seed=n)
    (root / "test.json").write_text(json.dumps([{"id": "31"}]))
    return root


def test_ssv2_templates_and_webm(tmp_path):
    root = make_ssv2(tmp_path / "ssv2")
    pairs = [["Pushing something from left to right", "Pushing something from right to left"]]
    dm = _dm(root, "ssv2", sampling="uniform", test_split="val", hflip=True, hflip_label_pairs=pairs)
    assert dm.class_names == list(SS_LABELS)
    assert dm.label_swap == {0: 1, 1: 0}
    records, infos = dm.checked_split("train")
    assert [r.label for r in records] == [0, 1, 2] and records[0].path.suffix == ".webm"
    assert infos[0].frames == 10
    _batch_ok(dm)
    _batch_ok(dm, "test")
    with pytest.raises(VideoDataError, match=r"test.json\[0\]: entry '31' has no 'template'.*data.test_split: val"):
        _dm(root, "ssv2", sampling="uniform").checked_split("test")
    with pytest.raises(ValueError, match=r"hflip_label_pairs: \['Pushing left'\] not among"):
        _dm(root, "ssv2", hflip_label_pairs=[["Pushing left", "Putting something on a surface"]])


# -- UCF101 and HMDB51 ----------------------------------------------------------------------------------------
def make_ucf101(root: Path) -> Path:
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n")
    vids = {c: [f"{c}/v_{c}_g0{g}_c01.avi" for g in (1, 2)] for c in ("ApplyEyeMakeup", "Archery")}
    for n, rel in enumerate(v for vs in vids.values() for v in vs):
        write_video(root / "UCF-101" / rel, seed=n)
    for k in (1, 2, 3):  # split k tests on group k (of 2 here)
        g = 1 if k != 2 else 2
        train = [f"{v} {i + 1}" for i, vs in enumerate(vids.values()) for v in vs if f"_g0{g}_" not in v]
        test = [v for vs in vids.values() for v in vs if f"_g0{g}_" in v]
        (lists / f"trainlist0{k}.txt").write_text("\n".join(train) + "\n")
        (lists / f"testlist0{k}.txt").write_text("\n".join(test) + "\n")
    return root


def test_ucf101_splits(tmp_path):
    root = make_ucf101(tmp_path / "ucf")
    dm1 = _dm(root, "ucf101", val_split="test")
    assert dm1.class_names == ["ApplyEyeMakeup", "Archery"]
    test1 = dm1.checked_split("test")[0]
    assert [r.video_id for r in test1] == ["v_ApplyEyeMakeup_g01_c01", "v_Archery_g01_c01"]
    assert [r.label for r in test1] == [0, 1]
    dm2 = _dm(root, "ucf101", split_id=2, val_split="test")
    assert [r.video_id for r in dm2.checked_split("train")[0]] == ["v_ApplyEyeMakeup_g01_c01", "v_Archery_g01_c01"]
    _batch_ok(dm2)
    with pytest.raises(VideoDataError, match="UCF101 has train and test lists only.*data.val_split: test"):
        _dm(root, "ucf101").checked_split("val")
    bad = root / "ucfTrainTestlist" / "trainlist03.txt"
    bad.write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 2\n" + bad.read_text())
    with pytest.raises(VideoDataError, match=r"trainlist03.txt:1: label '2' does not match the folder 'ApplyEye"):
        _dm(root, "ucf101", split_id=3).checked_split("train")


def make_hmdb51(root: Path) -> Path:
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    for c, cls in enumerate(("brush_hair", "cartwheel")):
        names = [f"{cls}_clip_{i}.avi" for i in range(3)]
        for i, name in enumerate(names):
            write_video(root / "hmdb51_org" / cls / name, seed=3 * c + i)
        for k in (1, 2, 3):
            marks = ["1", "2", "0"] if k == 1 else ["2", "1", "1"]
            (splits / f"{cls}_test_split{k}.txt").write_text(
                "".join(f"{n} {m} \n" for n, m in zip(names, marks, strict=False))
            )
    return root


def test_hmdb51_markers(tmp_path):
    root = make_hmdb51(tmp_path / "hmdb")
    dm = _dm(root, "hmdb51", val_split="test")
    assert dm.class_names == ["brush_hair", "cartwheel"]
    assert [r.video_id for r in dm.checked_split("train")[0]] == ["brush_hair_clip_0", "cartwheel_clip_0"]
    assert [r.label for r in dm.checked_split("test")[0]] == [0, 1]
    dm3 = _dm(root, "hmdb51", split_id=3, val_split="test")
    assert len(dm3.checked_split("train")[0]) == 4
    _batch_ok(dm3)
    f = root / "testTrainMulti_7030_splits" / "cartwheel_test_split1.txt"
    f.write_text(f.read_text() + "cartwheel_clip_9.avi 7\n")
    with pytest.raises(VideoDataError, match=r"cartwheel_test_split1.txt:4: expected '<video>.avi <0\|1\|2>'"):
        _dm(root, "hmdb51").checked_split("train")


# -- folders, annotation files, embedded, configs ----------------------------------------------------------
def make_folder(root: Path) -> Path:
    for split in ("train", "val"):
        for c, cls in enumerate(("cats", "dogs")):
            write_video(root / split / cls / f"{cls}_{split}.mp4", seed=c)
    return root


def test_folder_layout(tmp_path):
    root = make_folder(tmp_path / "folders")
    write_video(root / "val" / "birds" / "b.mp4")
    dm = _dm(root, "folder", on_bad_video="skip")
    assert dm.class_names == ["cats", "dogs"]
    _batch_ok(dm)
    with pytest.raises(VideoDataError, match=r"b.mp4: class folder 'birds' is not among the 2 classes"):
        _dm(root, "folder").checked_split("val")


def make_csv(root: Path) -> Path:
    write_video(root / "videos" / "a0.mp4")
    write_video(root / "videos" / "b0.mp4", seed=1)
    (root / "classes.txt").write_text("a\nb\n")
    (root / "train.csv").write_text("path,label\nvideos/a0.mp4,a\nvideos/b0.mp4,1\n")
    return root


def make_list(root: Path) -> Path:
    write_video(root / "videos" / "a0.mp4")
    write_video(root / "videos" / "b0.mp4", seed=1)
    (root / "classes.txt").write_text("a\nb\n")
    (root / "train.txt").write_text("videos/a0.mp4 a\nvideos/b0.mp4 1\n")
    return root


def test_csv_and_list_layouts(tmp_path):
    for name, maker in (("csv", make_csv), ("list", make_list)):
        dm = _dm(maker(tmp_path / name), name)
        assert dm.class_names == ["a", "b"]
        assert [r.label for r in dm.checked_split("train")[0]] == [0, 1]


# A fake copy with a train split for every registered layout but ``embedded`` (which writes its own): the fuzz
# tests (tests/test_fuzz.py) read these and mangle their annotation files. A new layout adds its maker here.
FAKE_COPIES: dict[str, Callable[[Path], Path]] = {
    "csv": make_csv,
    "list": make_list,
    "folder": make_folder,
    "kinetics400": make_kinetics,
    "kinetics600": make_kinetics,
    "kinetics700": make_kinetics,
    "ssv2": make_ssv2,
    "ucf101": make_ucf101,
    "hmdb51": make_hmdb51,
}


def test_every_registered_layout_has_a_fake_copy_and_reads_it(tmp_path):
    assert sorted(FAKE_COPIES) == sorted(set(DATASETS) - {"embedded"}), "add the new layout's maker to FAKE_COPIES"
    for name, maker in FAKE_COPIES.items():
        dm = _dm(maker(tmp_path / name), name)
        assert dm.checked_split("train")[0], name


def test_runtime_decode_failure_is_substituted_and_reported(embedded_root, tmp_path, caplog):
    """A video that passes the check but fails to decode during training: logged, replaced, reported."""
    import shutil

    root = tmp_path / "ds"
    shutil.copytree(embedded_root, root)
    dm = VideoDataModule(
        dataset="csv",
        root=str(root),
        num_workers=0,
        batch_size=4,
        on_bad_video="skip",
        sampling="stride",
        sampling_rate=2,
    )
    records, _ = dm.checked_split("train")
    victim = records[5].path
    victim.write_bytes(victim.read_bytes()[:200])  # corrupted after the check pass

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(3, 12)

        def training_step(self, batch, _):
            return torch.nn.functional.cross_entropy(self.head(batch["video"].mean((2, 3, 4))), batch["label"])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    report = SkippedVideoReport()  # vt registers it for every run (cli.FORCED_CALLBACKS); a bare Trainer is given it
    trainer = L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
        enable_model_summary=False,
        callbacks=[report],
    )
    with caplog.at_level(logging.WARNING):
        trainer.fit(Tiny(), datamodule=dm)
    assert report.history == [("train", 0, [str(victim)])]
    assert "run-time decode failure" in caplog.text and "1 train videos failed to decode at run time" in caplog.text
    ds = dm._datasets["train"]
    item = ds[5]
    assert item["skipped"] == 5 and item["video_index"] == 6  # the next video of the split, deterministically


DATA_CONFIGS = sorted((REPO / "configs" / "data").glob("*.yaml"))
RECIPES = sorted((REPO / "configs" / "data" / "recipes").glob("*.yaml"))


def test_data_configs_exist_and_name_known_options():
    import inspect

    params = set(inspect.signature(VideoDataModule.__init__).parameters)
    names = {p.stem for p in DATA_CONFIGS}
    # every registered layout has configs/data/<layout>.yaml, but the embedded default and csv's twin ``list``
    assert set(DATASETS) - {"embedded", "list"} <= names, sorted(set(DATASETS) - {"embedded", "list"} - names)
    assert {"none", "timesformer", "vivit", "uniformerv2"} <= {p.stem for p in RECIPES}
    for path in DATA_CONFIGS + RECIPES:
        cfg = yaml.safe_load(path.read_text())
        assert set(cfg) == {"data"} and set(cfg["data"]) <= params, path.name
        if path in DATA_CONFIGS:
            assert cfg["data"]["dataset"] == path.stem, path.name


@pytest.mark.parametrize(
    "model, recipe, dataset, maker",
    [
        ("timesformer_divided", "timesformer", "kinetics400", make_kinetics),
        ("uniformerv2_b16", "uniformerv2", "ssv2", make_ssv2),
        ("vivit_factorised", "none", "ucf101", make_ucf101),
    ],
)
def test_model_recipe_and_dataset_configs_compose(model, recipe, dataset, maker, tmp_path, monkeypatch):
    """``vt fit --config configs/<model>.yaml --config recipes/<r>.yaml --config data/<d>.yaml`` builds the data
    module on a fake copy (the model on the meta device: paper sizes)."""
    from video_transformers.cli import VideoTransformersCLI
    from video_transformers.lit import VideoClassifier

    root = maker(tmp_path / dataset)
    monkeypatch.chdir(tmp_path)

    class NoTrainer(VideoTransformersCLI):
        def instantiate_trainer(self, **kwargs):
            return None

    cfgs = [
        REPO / "configs" / f"{model}.yaml",
        REPO / "configs/data/recipes" / f"{recipe}.yaml",
        REPO / "configs/data" / f"{dataset}.yaml",
    ]
    args = [a for c in cfgs for a in ("--config", str(c))] + ["--data.root", str(root), "--model.pretrained", "null"]
    with torch.device("meta"):
        cli = NoTrainer(VideoClassifier, VideoDataModule, run=False, args=args, parser_kwargs={"prog": "vt"})
    dm = cli.datamodule
    assert dm.dataset == dataset and cli.model.hparams.class_names == dm.class_names
    assert cli.model.model.num_classes == dm.num_classes
    if recipe == "timesformer":
        assert dm.sampling.describe() == "8x32" and (dm.hparams.test_clips, dm.hparams.test_crops) == (1, 3)
    if recipe == "uniformerv2":  # SSv2 keeps its own views and flips
        assert dm.sampling.describe() == "u8" and (dm.hparams.test_clips, dm.hparams.test_crops) == (1, 3)
        assert dm.hparams.hflip is False and dm.hparams.rand_augment.startswith("rand-m7-n4")
