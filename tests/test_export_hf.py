"""``vt export --format hf`` (issue 16, part 1): a folder ``huggingface_hub`` uploads as it is (config.json with
every architecture argument, model.safetensors, README.md model card) that ``from_pretrained`` reads back to
identical logits, for every registered variant and for sizes no registry name describes."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import ModelCard

import video_transformers
from tests.test_hub import clip_for, same_logits, tiny
from video_transformers.inference.export import export_hf
from video_transformers.models import get_entry, list_models
from video_transformers.models.timesformer import TimeSformer
from video_transformers.models.uniformerv2 import UniFormerV2
from video_transformers.pretrained import PretrainedError
from video_transformers.pretrained.hf_folder import MODEL_TYPE
from video_transformers.pretrained.lightning_ckpt import build_recorded


def randomise_(model: torch.nn.Module) -> torch.nn.Module:
    """Every parameter random, so zero-initialised branches (temporal fc, gates, heads) are exercised too."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model.eval()


@pytest.mark.parametrize("name", list_models())
def test_every_registered_variant_round_trips_exactly(name: str, tmp_path: Path) -> None:
    model, spec = tiny(name)
    randomise_(model)
    folder = export_hf(model, spec, tmp_path / "hf")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    params = [p for p in inspect.signature(type(model).__init__).parameters if p != "self"]
    assert config["model_type"] == MODEL_TYPE and list(config["model_kwargs"]) == params  # every argument
    loaded = video_transformers.from_pretrained(folder)
    assert type(loaded) is type(model) and loaded.model_name == name
    assert same_logits(model, loaded)
    assert loaded.state_dict().keys() == model.state_dict().keys()


@pytest.mark.parametrize(
    "build",
    [
        lambda: TimeSformer(num_classes=3, img_size=24, num_frames=3, patch_size=8, embed_dim=48, depth=3,
                            num_heads=3, mlp_ratio=2.5, attention_type="joint_space_time", norm_eps=1e-5),
        lambda: UniFormerV2(num_classes=4, img_size=32, num_frames=4, patch_size=8, embed_dim=48, depth=3,
                            num_heads=2, local_mhra="double", global_layers=[0, 2], temporal_downsample=True),
    ],
    ids=["timesformer_joint_48x3", "uniformerv2_48x3_global0_2"],
)  # fmt: skip
def test_sizes_no_registry_name_describes_round_trip(build, tmp_path: Path) -> None:
    model, spec = build_recorded(build)
    randomise_(model)
    loaded = video_transformers.from_pretrained(export_hf(model, spec, tmp_path / "hf"))
    assert same_logits(model, loaded)
    with torch.no_grad():
        assert loaded(clip_for(model)).shape == (2, model.num_classes)


def test_folder_refuses_overwrites_and_unrecorded_models(tmp_path: Path) -> None:
    model, spec = tiny()
    out = tmp_path / "hf"
    export_hf(model, spec, out)
    with pytest.raises(PretrainedError, match="not an empty folder"):
        export_hf(model, spec, out)
    with pytest.raises(PretrainedError, match="constructor call was not recorded"):
        export_hf(model, None, tmp_path / "other")


def test_overrides_give_a_new_head_and_bad_shapes_name_the_key(tmp_path: Path) -> None:
    model, spec = tiny()
    folder = export_hf(model, spec, tmp_path / "hf")
    fresh = video_transformers.from_pretrained(folder, num_classes=2)
    assert fresh.num_classes == 2 and fresh.class_names is None
    with pytest.raises(PretrainedError, match="shape mismatch"):
        video_transformers.from_pretrained(folder, embed_dim=96)


def test_cli_exports_a_checkpoint_with_its_card(embedded_root: Path, tmp_path_factory, tmp_path: Path, capsys):
    from tests.test_predict import make_checkpoint
    from video_transformers.commands.export import main

    ckpt = make_checkpoint(embedded_root, tmp_path_factory.mktemp("ckpt"))
    out = tmp_path / "hf"
    assert main(["--ckpt_path", str(ckpt), "--format", "hf", "--out", str(out), "--hub_id", "me/tiny-fe"]) == 0
    text = capsys.readouterr().out
    assert "hf upload <namespace>/<name>" in text
    assert "max |exported - eager| logits: batch 1: 0.00e+00, batch 3: 0.00e+00" in text
    config = json.loads((out / "config.json").read_text())
    assert config["clip"] == {"num_frames": 8, "sampling_rate": 2, "fps": 16.0, "crop_size": 32, "short_side": 40,
                              "mean": [0.4, 0.45, 0.5], "std": [0.2, 0.25, 0.3], "sampling": "time"}  # fmt: skip
    assert config["id2label"]["0"] == "move_right" and config["model_name"] == "vivit_base_factorised_encoder_16x2"
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "video-transformers" and card.data.pipeline_tag == "video-classification"
    assert 'from_pretrained("hf-hub:me/tiny-fe")' in card.text
    assert "No `test_report.json` was found" in card.text and "global_step: 1" in card.text
    assert str(ckpt.parent) not in card.content  # the card names the file, not this machine's folders


def test_cli_puts_the_test_report_in_the_card(embedded_root: Path, tmp_path_factory, tmp_path: Path) -> None:
    import shutil

    from tests.test_predict import make_checkpoint
    from video_transformers.commands.export import main

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    ckpt = run / "checkpoints" / "best.ckpt"
    shutil.copy(make_checkpoint(embedded_root, tmp_path_factory.mktemp("ckpt")), ckpt)
    report = {
        "metrics": {"test/acc1": 0.875, "test/acc5": 1.0},
        "views": {"clips": 4, "crops": 3},
        "manifest": {"listed": 12, "found": 12, "unreadable": 0, "annotations_sha256": "ab" * 32},
        "dataset": {"name": "embedded"},
    }
    (run / "test_report.json").write_text(json.dumps(report))  # vt test writes it in the run folder
    out = tmp_path / "hf"
    assert main(["--ckpt_path", str(ckpt), "--format", "hf", "--out", str(out), "--no-check"]) == 0
    assert json.loads((out / "test_report.json").read_text()) == report
    card = ModelCard.load(out / "README.md")
    results = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert results == {"test/acc1": 0.875, "test/acc5": 1.0}
    assert {r.dataset_name for r in card.data.eval_results} == {"embedded"}
    assert "| test/acc1 | 0.875 |" in card.text and "  - clips: 4" in card.text and "  - found: 12" in card.text
    meta = yaml.safe_load(card.content.split("---")[1])
    assert meta["model-index"][0]["results"][0]["task"]["type"] == "video-classification"


def test_cli_export_of_a_registered_model_and_errors(tmp_path: Path, capsys) -> None:
    from video_transformers.commands.export import main

    name = "uniformerv2_b16_8x224"
    assert main(["--model", name, "--tiny", "--format", "hf", "--out", str(tmp_path / "hf")]) == 0
    loaded = video_transformers.from_pretrained(tmp_path / "hf")
    assert loaded.num_frames == get_entry(name).tiny.get("num_frames", loaded.num_frames)
    capsys.readouterr()
    assert main(["--model", name, "--tiny", "--format", "hf", "--out", str(tmp_path / "hf")]) == 2
    assert "not an empty folder" in capsys.readouterr().err
