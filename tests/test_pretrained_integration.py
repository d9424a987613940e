"""Issue 4 end to end: ``from_pretrained`` on every registered format, ``VideoClassifier(init_from=...)`` in
``vt test`` / ``vt fit``, ``pretrained=`` image weights per family, and normalisation that follows the model.

Every checkpoint is made here at tiny size (no downloads): Hugging Face folders with ``save_pretrained``,
an official TimeSformer ``.pyth`` and an official UniFormerV2 dict by renaming our keys, and this suite's
``.ckpt`` from a short in-process ``vt fit`` on the tiny embedded fixture.
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

import pytest
import timm
import torch
from torch import nn

import video_transformers
from video_transformers.cli import run_cli
from video_transformers.data import VideoDataModule
from video_transformers.lit import VideoClassifier
from video_transformers.models import get_entry
from video_transformers.models.timesformer import TimeSformer
from video_transformers.models.uniformerv2 import CLIP_MEAN, CLIP_STD, UniFormerV2
from video_transformers.pretrained import PretrainedError, init_from_image, list_formats
from video_transformers.pretrained.lightning_ckpt import SPEC_KEY

NUM_CLASSES, FRAMES, SIZE = 12, 8, 32  # the embedded fixture's classes; the data module's default clip
# A tiny ViViT Model 1 for the in-process fits (width 32, one block: fast on two cores)
FIT_BACKBONE = ["--model.backbone", "vivit_base_spatio_temporal_16x2", "--model.backbone_kwargs"]
FIT_KWARGS = '{"patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}'


def randomise_(model: nn.Module, scale: float = 0.2, seed: int = 0) -> nn.Module:
    """Every parameter random (HF zero-inits CLS / position embeddings; ours zero-init temporal branches)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return model.eval()


def cli_args(root: Path, tmp_path: Path) -> list[str]:
    return [
        "--data.root", str(root), "--data.num_workers", "0", "--data.batch_size", "4", "--data.test_clips", "1",
        "--data.test_crops", "1", "--trainer.accelerator", "cpu", "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path),
    ]  # fmt: skip


# -- checkpoints of every format, made here ----------------------------------------------------------------
def hf_timesformer(folder: Path, num_labels: int = NUM_CLASSES) -> nn.Module:
    import transformers

    config = transformers.TimesformerConfig(
        image_size=SIZE, patch_size=8, num_frames=FRAMES, hidden_size=64, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=128, num_labels=num_labels,
    )  # fmt: skip
    torch.manual_seed(0)
    hf = randomise_(transformers.TimesformerForVideoClassification(config), 0.05)
    hf.save_pretrained(folder)
    return hf


def hf_vivit(folder: Path, num_labels: int = NUM_CLASSES) -> nn.Module:
    import transformers

    config = transformers.VivitConfig(
        image_size=SIZE, num_frames=FRAMES, tubelet_size=[2, 8, 8], hidden_size=64, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=128, num_labels=num_labels,
    )  # fmt: skip
    config.id2label = {i: f"class_{i}" for i in range(num_labels)}
    config.label2id = {v: k for k, v in config.id2label.items()}
    torch.manual_seed(0)
    hf = randomise_(transformers.VivitForVideoClassification(config))
    hf.save_pretrained(folder)
    return hf


def official_timesformer(path: Path) -> nn.Module:
    """Our TimeSformer saved in the official release's layout (``model_state``, ``model.`` prefix, 2D kernel)."""
    ours = randomise_(
        TimeSformer(
            img_size=SIZE, num_frames=FRAMES, patch_size=8, embed_dim=128, depth=2, num_heads=2, num_classes=NUM_CLASSES
        ),
        0.05,
    )  # fmt: skip  (width 128 -> 2 heads of 64: the head count the loader infers)
    sd = {f"model.{k}": v.clone() for k, v in ours.state_dict().items()}
    sd["model.patch_embed.proj.weight"] = sd["model.patch_embed.proj.weight"].squeeze(2)
    torch.save({"model_state": sd, "epoch": 15, "cfg": f"DATA:\n  NUM_FRAMES: {FRAMES}\n"}, path)
    return ours


_UNIFORMER_RENAMES = [  # ours -> official (independent of the loader's table; see test_uniformerv2_pretrained)
    (r"^cls_token$", "class_embedding"),
    (r"^pos_embed$", "positional_embedding"),
    (r"^patch_embed\.proj\.", "conv1."),
    (r"^norm_pre\.", "ln_pre."),
    (r"^(temporal_cls_token|balance)$", r"transformer.\1"),
    (r"^fc_norm\.", "transformer.proj.0."),
    (r"^head\.", "transformer.proj.2."),
    (r"^global_blocks\.(\d+)\.dpe\.", r"transformer.dpe.\1."),
    (r"^global_blocks\.(\d+)\.norm_ctx\.", r"transformer.dec.\1.ln_3."),
    (r"^global_blocks\.(\d+)\.", r"transformer.dec.\1."),
    (r"^blocks\.(\d+)\.", r"transformer.resblocks.\1."),
]
_UNIFORMER_PARTS = [
    (r"attn\.qkv\.", "attn.in_proj_"),
    (r"attn\.proj\.", "attn.out_proj."),
    (r"norm([12])\.", r"ln_\1."),
    (r"mlp\.fc1\.", "mlp.c_fc."),
    (r"mlp\.fc2\.", "mlp.c_proj."),
]


def official_uniformerv2(path: Path) -> nn.Module:
    ours = randomise_(
        UniFormerV2(
            img_size=SIZE,
            num_frames=FRAMES,
            patch_size=8,
            embed_dim=64,
            depth=2,
            num_heads=1,
            local_mhra="double",
            global_layers=[1],
            num_classes=NUM_CLASSES,
        ),
        0.2,
    )  # fmt: skip  (width 64 -> 1 head: the loader's width // 64)
    out = {}
    for k, v in ours.state_dict().items():
        if k == "cls_token":
            v = v.reshape(-1)
        elif k == "pos_embed":
            v = v[0]
        for pattern, repl in _UNIFORMER_RENAMES:
            k, n = re.subn(pattern, repl, k)
            if n:
                break
        if k.startswith("transformer.") and not k.startswith("transformer.proj."):
            for pattern, repl in _UNIFORMER_PARTS:
                k = re.sub(pattern, repl, k)
        out[f"backbone.{k}"] = v
    torch.save(out, path)
    return ours


@pytest.fixture(scope="module")
def fitted(embedded_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, VideoClassifier]:
    """This suite's checkpoint: two training steps of ``vt fit`` on the tiny fixture, saved by the trainer."""
    tmp = tmp_path_factory.mktemp("fit")
    cli = run_cli(["fit", *FIT_BACKBONE, FIT_KWARGS, *cli_args(embedded_root, tmp), "--trainer.max_epochs", "1",
                   "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"])  # fmt: skip
    assert cli.trainer.global_step == 2
    path = tmp / "fit.ckpt"
    cli.trainer.save_checkpoint(path)
    return path, cli.model.eval()


def _hf_forward(hf: nn.Module) -> callable:
    return lambda x: hf(pixel_values=x.transpose(1, 2)).logits  # HF clips: (B, T, C, H, W)


# -- from_pretrained on every format -------------------------------------------------------------------------
FORMATS = ["hf_timesformer", "hf_vivit", "timesformer_official", "uniformerv2_official", "lightning_ckpt",
           "hf_video_transformers"]  # fmt: skip


def make_source(fmt: str, tmp: Path, fitted: tuple[Path, VideoClassifier]) -> tuple[Path, callable, dict]:
    """``(path, reference forward on (B, C, T, H, W), expected attributes)`` for one format."""
    if fmt == "hf_timesformer":
        hf = hf_timesformer(tmp / "hf_timesformer")
        return tmp / "hf_timesformer", _hf_forward(hf), {"class_names": None}
    if fmt == "hf_vivit":
        hf = hf_vivit(tmp / "hf_vivit")
        names = [f"class_{i}" for i in range(NUM_CLASSES)]
        return tmp / "hf_vivit", _hf_forward(hf), {"class_names": names, "mean": (0.5,) * 3, "std": (0.5,) * 3}
    if fmt == "timesformer_official":
        ref = official_timesformer(tmp / "TimeSformer_divST_8x32.pyth")
        return tmp / "TimeSformer_divST_8x32.pyth", ref, {"mean": (0.45,) * 3, "std": (0.225,) * 3}
    if fmt == "uniformerv2_official":
        ref = official_uniformerv2(tmp / "k400_uniformerv2_tiny_8x32.pyth")
        return tmp / "k400_uniformerv2_tiny_8x32.pyth", ref, {"mean": (0.45,) * 3, "std": (0.225,) * 3}
    path, lit = fitted
    expected = {"class_names": lit.hparams.class_names, "mean": (0.5,) * 3, "std": (0.5,) * 3}
    if fmt == "hf_video_transformers":  # this suite's export of the fitted checkpoint (vt export --format hf)
        from video_transformers.inference.export import export_hf
        from video_transformers.pretrained.lightning_ckpt import build_recorded

        model, spec = build_recorded(lambda: video_transformers.from_pretrained(path))
        return export_hf(model, spec, tmp / "hf_export"), lit.model, expected
    return path, lit.model, expected


# Formats whose reference cannot run in this process (JAX): their parity tests compare against committed outputs.
COVERED_ELSEWHERE = {"scenic_vivit": "tests/test_scenic_vivit.py (scenic's own logits, tests/fixtures/scenic)"}


def test_every_registered_format_is_covered_here() -> None:
    covered = sorted([*FORMATS, *COVERED_ELSEWHERE])
    assert covered == list_formats(), "a new from_pretrained format needs a case in this file"


@pytest.mark.parametrize("fmt", FORMATS)
def test_from_pretrained_each_format_matches_its_reference(fmt: str, tmp_path: Path, fitted, capsys) -> None:
    path, reference, expected = make_source(fmt, tmp_path, fitted)
    model = video_transformers.from_pretrained(path)  # detected from the file / folder
    assert not model.training and model.num_classes == NUM_CLASSES
    for key, value in expected.items():
        assert getattr(model, key) == value, key
    x = torch.randn(2, 3, FRAMES, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (model(x) - reference(x)).abs().max().item()
    with capsys.disabled():  # the figure docs/pretrained.md reports
        print(f"\n[parity] {fmt}: max |logits - reference| = {diff:.2e}")
    assert diff <= 1e-4, f"{fmt}: max abs diff {diff:.2e}"


def test_lightning_checkpoint_is_plain_and_rebuilds_from_hparams(fitted) -> None:
    path, lit = fitted
    ckpt = torch.load(path, map_location="cpu", weights_only=True)  # hparams hold only plain types
    hp = ckpt["hyper_parameters"]
    assert hp["init_from"] is None and hp["pretrained"] is None and hp["num_classes"] == NUM_CLASSES
    assert ckpt[SPEC_KEY] == {"mean": [0.5] * 3, "std": [0.5] * 3}  # a registry backbone: hparams describe it
    del ckpt[SPEC_KEY]  # a checkpoint written before the entry existed still loads, from hparams alone
    torch.save(ckpt, path.with_name("no_spec.ckpt"))
    model = video_transformers.from_pretrained(path.with_name("no_spec.ckpt"))
    torch.testing.assert_close(model.state_dict(), lit.model.state_dict(), rtol=0, atol=0)
    assert model.class_names == lit.hparams.class_names
    with pytest.raises(PretrainedError, match="head.weight: checkpoint"):  # strict: shapes are checked
        video_transformers.from_pretrained(path, embed_dim=64)


# -- vt test / vt fit with init_from -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fmt", "mean", "std"), [("hf_vivit", 0.5, 0.5), ("timesformer_official", 0.45, 0.225)]
)  # fmt: skip
def test_vt_test_init_from_evaluates_the_released_model(fmt, mean, std, embedded_root, tmp_path, fitted) -> None:
    path, reference, _ = make_source(fmt, tmp_path, fitted)
    cli = run_cli(["test", "--model.init_from", str(path), *cli_args(embedded_root, tmp_path)])
    assert cli.trainer.callback_metrics["test/videos"] == NUM_CLASSES  # evaluated without training
    dm = cli.datamodule
    assert dm.normalisation() == ((mean,) * 3, (std,) * 3)  # the model's, not the Kinetics default
    assert (dm.hparams.mean, dm.hparams.std) == ((mean,) * 3, (std,) * 3)  # what a checkpoint records
    batch = next(iter(dm.test_dataloader()))
    video = batch["video"]
    lo, hi = (0 - mean) / std, (1 - mean) / std
    assert lo - 1e-5 <= video.min() and video.max() <= hi + 1e-5 and video.max() > hi - 0.5  # normalised so
    with torch.no_grad():  # eval: Lightning hands the module back in train mode (drop-path on)
        diff = (cli.model.eval()(video) - reference(video)).abs().max().item()
    assert diff <= 1e-4, f"vt test's model differs from the reference by {diff:.2e}"


def test_explicit_data_mean_std_win_over_the_model(embedded_root, tmp_path) -> None:
    dm = VideoDataModule(root=str(embedded_root), mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6))
    assert dm.normalisation() == ((0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    assert VideoDataModule(root=str(embedded_root)).normalisation() == ((0.45,) * 3, (0.225,) * 3)  # no model
    with pytest.raises(ValueError, match="both data.mean and data.std"):
        VideoDataModule(root=str(embedded_root), mean=(0.5, 0.5, 0.5)).normalisation()


def five_class_csv(embedded_root: Path, root: Path) -> list[str]:
    """The fixture's first 5 classes as a CSV dataset (absolute video paths)."""
    classes = (embedded_root / "classes.txt").read_text().split()[:5]
    root.mkdir()
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    for split in ("train", "val", "test"):
        with (embedded_root / f"{split}.csv").open() as f, (root / f"{split}.csv").open("w", newline="") as g:
            out = csv.writer(g)
            out.writerow(["path", "label"])
            for row in csv.DictReader(f):
                if row["label"] in classes:
                    out.writerow([str(embedded_root / row["path"]), row["label"]])
    return classes


def test_vt_fit_init_from_checkpoint_onto_fewer_classes(embedded_root, tmp_path, fitted, caplog) -> None:
    path, source = fitted
    classes = five_class_csv(embedded_root, tmp_path / "five")
    # the CSV lists the fixture's videos by absolute path: outside its root, so allowed explicitly
    args = ["--data.dataset", "csv", *cli_args(tmp_path / "five", tmp_path), "--data.allow_outside_root", "true"]
    with caplog.at_level(logging.WARNING, logger="video_transformers.pretrained.lightning_ckpt"):
        cli = run_cli(["fit", "--model.init_from", str(path), *args, "--trainer.max_epochs", "1",
                       "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1"])  # fmt: skip
    assert "12 checkpoint classes, 5 wanted" in caplog.text and "head.weight" in caplog.text
    model = cli.model.model
    assert cli.trainer.global_step == 1 and model.head.weight.shape == (5, 32) and model.class_names == classes
    assert cli.model.hparams.num_classes == 5
    # the backbone (not the head) starts as the checkpoint's, then trains
    fresh = VideoClassifier(init_from=str(path), num_classes=5, num_frames=FRAMES, img_size=SIZE).model
    src = source.model.state_dict()
    for k, v in fresh.state_dict().items():
        if not k.startswith("head."):
            torch.testing.assert_close(v, src[k], rtol=0, atol=0, msg=k)
    assert not torch.equal(fresh.head.weight[:5], src["head.weight"][:5])
    # the fine-tuned checkpoint records its architecture, so from_pretrained rebuilds it without the source
    out = tmp_path / "tuned.ckpt"
    cli.trainer.save_checkpoint(out)
    assert (
        torch.load(out, weights_only=True)[SPEC_KEY]["class"] == "video_transformers.models.vivit:ViViTSpatioTemporal"
    )
    path.rename(path.with_suffix(".moved"))
    try:
        tuned = video_transformers.from_pretrained(out)
    finally:
        path.with_suffix(".moved").rename(path)
    assert tuned.class_names == classes and (tuned.mean, tuned.std) == ((0.5,) * 3, (0.5,) * 3)
    torch.testing.assert_close(tuned.state_dict(), model.state_dict(), rtol=0, atol=0)


def test_init_from_sizes_follow_the_data_or_fail_naming_them(tmp_path) -> None:
    official_timesformer(tmp_path / "ts.pyth")
    model = VideoClassifier(init_from=str(tmp_path / "ts.pyth"), num_frames=4, img_size=48).model  # resampled
    assert (model.num_frames, model.img_size, model.num_classes) == (4, 48, NUM_CLASSES)
    hf_vivit(tmp_path / "vivit")
    with pytest.raises(PretrainedError, match=r"(?s)built for \{'num_frames': 8\}.*data.num_frames"):
        VideoClassifier(init_from=str(tmp_path / "vivit"), num_frames=4)
    with pytest.raises(ValueError, match="exclude each other"):
        VideoClassifier(init_from=str(tmp_path / "vivit"), pretrained="vit_base_patch16_224")


# -- pretrained= image weights -------------------------------------------------------------------------------
TINY_IMAGE = dict(img_size=SIZE, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=0)


@pytest.mark.parametrize(
    ("backbone", "timm_name", "block"),
    [
        ("timesformer_base_divided_8x224", "vit_base_patch16_224", "blocks.0"),
        ("vivit_base_spatio_temporal_16x2", "vit_base_patch16_224", "encoder.blocks.0"),
        ("uniformerv2_b16_8x224", "vit_base_patch16_clip_quickgelu_224", "blocks.0"),
    ],
)
def test_pretrained_local_timm_file_per_family(backbone, timm_name, block, tmp_path) -> None:
    image = randomise_(timm.create_model(timm_name, pretrained=False, **TINY_IMAGE), 0.05)
    path = tmp_path / "image.pth"
    torch.save(image.state_dict(), path)
    kwargs = {**get_entry(backbone).tiny, "num_frames": 4}
    lit = VideoClassifier(backbone=backbone, backbone_kwargs=kwargs, num_classes=3, pretrained=str(path))
    own, img = lit.model.state_dict(), image.state_dict()
    for part in ("attn.qkv.weight", "mlp.fc2.bias", "norm1.weight"):
        torch.testing.assert_close(own[f"{block}.{part}"], img[f"blocks.0.{part}"], rtol=0, atol=0)
    if backbone.startswith("uniformerv2"):
        assert (lit.model.mean, lit.model.std) == (CLIP_MEAN, CLIP_STD)
        assert lit.input_normalisation == (CLIP_MEAN, CLIP_STD)


def test_init_from_image_dispatch_errors(tmp_path) -> None:
    with pytest.raises(TypeError, match="TimeSformer image initialisation takes no options"):
        init_from_image(video_transformers.create_model("timesformer_base_divided_8x224",
                                                        **get_entry("timesformer_base_divided_8x224").tiny),
                        "unused", inflation="average")  # fmt: skip
    with pytest.raises(PretrainedError, match="no image initialisation for Linear"):
        init_from_image(nn.Linear(2, 2), "unused")


def test_offline_pretrained_names_the_file_to_provide(monkeypatch, tmp_path) -> None:
    def offline(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(timm, "create_model", offline)
    monkeypatch.setenv("VT_WEIGHTS_DIR", str(tmp_path / "weights"))
    name = "vit_base_patch16_224.augreg_in21k"
    with pytest.raises(PretrainedError) as e:
        VideoClassifier(backbone="vivit_base_spatio_temporal_16x2", backbone_kwargs=get_entry(
            "vivit_base_spatio_temporal_16x2").tiny, num_classes=3, pretrained=name)  # fmt: skip
    message = str(e.value)
    assert "Network is unreachable" in message
    assert str(tmp_path / "weights" / f"{name}.safetensors") in message and "VT_WEIGHTS_DIR" in message
