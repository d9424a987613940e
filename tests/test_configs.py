"""The shipped configs: every YAML directly under configs/ parses with the ``vt`` parser and its model and data
module instantiate; every registered model has one; they state only their differences; the paper configs
name the initialisation and schedule of their official recipes; and each paper config runs two training steps
on a CPU through ``configs/profiles/cpu_smoke.yaml``.

Paper-sized configs are instantiated on the meta device (shapes, no storage). The data module is pointed at a
temporary root holding only ``classes.txt``: its ``__init__`` reads nothing else, so no video is listed or
decoded. The Trainer is not instantiated there: configs name GPU accelerators and mixed precision this machine
may not have; its section is still parsed and type-checked by the parser.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections import Counter

import pytest
import timm
import torch

from tests.conftest import REPO
from video_transformers.cli import VideoTransformersCLI, main, read_config, run_cli
from video_transformers.data import VideoDataModule, synthetic
from video_transformers.lit import VideoClassifier
from video_transformers.models import get_entry, list_models

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
SMOKE = REPO / "configs" / "profiles" / "cpu_smoke.yaml"
CLASSES = [f"class_{i}" for i in range(7)]
RESOLVED = {p.stem: read_config(["--config", str(p)]) for p in CONFIGS}
PAPER = [p for p in CONFIGS if RESOLVED[p.stem].data.dataset != "embedded"]  # the embedded ones: the demo
# The image weights each paper trained from, by backbone prefix (timm names): TimeSformer's vit.py:34 loads
# jx_vit_base_p16_224 (IN-21k, fine-tuned on IN-1k); scenic's ViViT configs the original IN-21k ViT; UniFormerV2
# the CLIP tower of its size (exp/k400/*: uniformerv2_b16 / _l14 / _l14_336).
INIT = {
    "timesformer_": "vit_base_patch16_224.orig_in21k_ft_in1k",
    "vivit_base_": "vit_base_patch16_224.orig_in21k",
    "vivit_large_": "vit_large_patch16_224.orig_in21k",
    "uniformerv2_b16_": "vit_base_patch16_clip_224.openai",
    "uniformerv2_l14_8x224": "vit_large_patch14_clip_224.openai",
    "uniformerv2_l14_32x336": "vit_large_patch14_clip_336.openai",
    "uniformerv2_l14_frozen_8x336": "vit_large_patch14_clip_336.openai",
}


class _NoTrainerCLI(VideoTransformersCLI):
    def instantiate_trainer(self, **kwargs):  # noqa: ANN003, ANN201 (LightningCLI hook)
        return None


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("classes_only")
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    (root / "labels.json").write_text(json.dumps({c: str(i) for i, c in enumerate(CLASSES)}))  # configs on SSv2
    return root


def test_there_are_configs():
    assert CONFIGS and PAPER, "configs/ holds no YAML file"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_parses_and_instantiates_on_meta(path, data_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # loggers and checkpoint callbacks name directories relative to the cwd
    args = ["--config", str(path), "--data.root", str(data_root), "--model.pretrained", "null"]
    with torch.device("meta"):
        cli = _NoTrainerCLI(VideoClassifier, VideoDataModule, run=False, args=args, parser_kwargs={"prog": "vt"})
    model, data = cli.model.model, cli.datamodule
    expected_classes = len(synthetic.CLASS_NAMES) if data.dataset == "embedded" else len(CLASSES)
    assert data.num_classes == expected_classes
    assert model.num_classes == data.num_classes, f"{path.name}: data.num_classes is not linked to the model"
    assert (model.num_frames, model.img_size) == (data.num_frames, data.crop_size), f"{path.name}: sizes not linked"
    assert all(p.is_meta for p in model.parameters()), f"{path.name}: parameters were allocated"
    assert not list(tmp_path.iterdir()), f"{path.name}: instantiation wrote files"


def test_every_registered_model_has_a_config():
    covered = {cfg.model.backbone for cfg in RESOLVED.values()}
    missing = sorted(set(list_models()) - covered)
    assert not missing, f"registered models without a config under configs/: {missing}"


def test_configs_state_only_their_differences():
    lines = {p.name: Counter(x.rstrip() for x in p.read_text().splitlines() if x.strip()) for p in CONFIGS}
    shared = {(a, b): sum((lines[a] & lines[b]).values()) for a, b in itertools.combinations(lines, 2)}
    worst = max(shared, key=shared.get)
    assert shared[worst] <= 20, f"{worst} share {shared[worst]} identical lines: move them into a base config"
    for path in CONFIGS:  # the run name and folders come from the file name, not from copies of it
        assert "runs/" not in path.read_text() and "default_root_dir" not in path.read_text(), path.name


@pytest.mark.parametrize("path", PAPER, ids=[p.stem for p in PAPER])
def test_paper_configs_name_the_papers_initialisation(path):
    model = RESOLVED[path.stem].model
    expected = next(v for k, v in INIT.items() if model.backbone.startswith(k))
    assert model.pretrained == expected, f"{path.name}: initialised from {model.pretrained}, the paper from {expected}"
    assert timm.models.get_pretrained_cfg(model.pretrained) is not None  # a name timm resolves


def test_paper_schedules_are_the_official_ones():
    timesformer = RESOLVED["timesformer_divided"].model  # configs/Kinetics/TimeSformer_divST_8x32_224.yaml
    assert timesformer.lr_schedule.class_path.endswith("MultiStep")
    assert timesformer.lr_schedule.init_args.milestones == [11, 14] and timesformer.lr_schedule.init_args.gamma == 0.1
    assert timesformer.optimizer.init_args.nesterov and not timesformer.filter_bias_and_bn
    assert RESOLVED["vivit_factorised_b16x2"].model.optimizer.init_args.lr == 0.05  # scenic's FE config
    assert RESOLVED["vivit_spatio_temporal"].model.optimizer.init_args.lr == 0.1  # scenic's vivit_base_k400
    uni = RESOLVED["uniformerv2_b16"].model.lr_schedule.init_args  # WARMUP_START_LR = COSINE_END_LR = 1e-6
    assert (uni.warmup_epochs, uni.warmup_start_ratio, uni.min_lr_ratio) == (5, 0.1, 0.1)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_vt_info_reads_config(path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["info", "--config", str(path), "--format", "json"])
    captured = capsys.readouterr()
    assert e.value.code == 0, captured.err
    (row,) = json.loads(captured.out)
    data = RESOLVED[path.stem].data  # read as vt fit reads it: bases and defaults included
    assert row["input"].startswith(f"{data.num_frames}x{data.crop_size}x")
    assert row["views"] == f"{data.test_clips}x{data.test_crops}"
    assert row["gflops_per_view"] > 0 and row["params_m"] > 0


@pytest.mark.parametrize("path", PAPER, ids=[p.stem for p in PAPER])
def test_paper_config_runs_on_a_cpu_through_the_smoke_profile(path, embedded_root, tmp_path, monkeypatch, caplog):
    """The paper's recipe (optimizer, schedule, initialisation, loop) through the profile, 2 steps; no network
    here: the image weights become random ones, and the run says so. To keep the suite within a CI runner's time
    and memory, the backbone is the registry's tiny one of the same class (paper sizes take 4-6 GB and a minute
    each with AdamW; they are built on the meta device above)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VT_WEIGHTS_DIR", str(tmp_path / "no_weights"))
    real = timm.create_model

    def offline(name, pretrained=False, **kwargs):  # noqa: ANN001, ANN003, ANN202
        if pretrained:
            raise OSError(f"no network in the tests ({name})")
        return real(name, pretrained=pretrained, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    expected = RESOLVED[path.stem].model
    tiny = dict(get_entry(expected.backbone).tiny)
    crop, frames = tiny.pop("img_size"), tiny.pop("num_frames")
    side = [f"--data.train_short_side=[{crop}, {max(crop, 40)}]", f"--data.eval_short_side={max(crop, 40)}"]
    small = ["--model.backbone_kwargs", json.dumps(tiny), "--data.crop_size", str(crop), "--data.num_frames",
             str(frames), *side]  # fmt: skip
    args = ["fit", "--config", str(path), "--config", str(SMOKE), "--data.root", str(embedded_root), *small]
    with caplog.at_level(logging.WARNING):
        cli = run_cli(args)
    optimizer = type(cli.trainer.optimizers[0])
    assert cli.trainer.global_step == 2 and cli.trainer.precision == "32-true"
    assert cli.model.hparams.backbone == expected.backbone
    assert f"{optimizer.__module__}.{optimizer.__name__}".endswith(expected.optimizer.class_path.split(".")[-1])
    assert "GOING ON FROM RANDOM WEIGHTS" in caplog.text and expected.pretrained in caplog.text
    assert (tmp_path / f"runs/{path.stem}/version_0/checkpoints/last.ckpt").is_file()
