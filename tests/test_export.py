"""`vt export`: each family's tiny model through ONNX (run with onnxruntime), TorchScript and torch.export,
matching the eager model within 1e-4 at batch sizes 1 and 3 (dynamic batch)."""

from __future__ import annotations

import json

import pytest
import torch

from tests.test_predict import make_checkpoint
from video_transformers.inference.export import FORMATS, SUFFIX, export_model, load_exported, max_abs_diff
from video_transformers.models import create_model, get_entry

FAMILIES = ["vivit_base_factorised_encoder_16x2", "timesformer_base_divided_8x224", "uniformerv2_b16_8x224"]


@pytest.mark.parametrize("name", FAMILIES)
def test_every_format_matches_eager(name, tmp_path):
    torch.manual_seed(0)
    model = create_model(name, **get_entry(name).tiny, num_classes=7).eval()
    for fmt in FORMATS:
        path = export_model(model, fmt, tmp_path / f"{name}{SUFFIX[fmt]}")
        diffs = max_abs_diff(model, path, fmt, batches=(1, 3))
        assert set(diffs) == {1, 3}
        assert max(diffs.values()) < 1e-4, f"{name} {fmt}: {diffs}"
        out = load_exported(path, fmt)(torch.zeros(3, 3, model.num_frames, model.img_size, model.img_size))
        assert out.shape == (3, 7)


def test_parity_check_would_catch_a_different_model(tmp_path):
    name = FAMILIES[0]
    model = create_model(name, **get_entry(name).tiny, num_classes=4).eval()
    path = export_model(model, "onnx", tmp_path / "m.onnx")
    with torch.no_grad():
        model.head.bias.add_(1e-3)  # the eager model drifts from the exported file
    assert max(max_abs_diff(model, path, "onnx").values()) == pytest.approx(1e-3, rel=1e-3)


def test_cli_exports_a_checkpoint_with_its_sidecar(embedded_root, tmp_path_factory, tmp_path, capsys):
    from video_transformers.commands.export import main

    ckpt = make_checkpoint(embedded_root, tmp_path_factory.mktemp("ckpt"))
    out = tmp_path / "model.onnx"
    assert main(["--ckpt_path", str(ckpt), "--format", "onnx", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "max |exported - eager| logits: batch 1:" in text
    meta = json.loads((tmp_path / "model.onnx.json").read_text())
    assert meta["format"] == "onnx" and meta["classes"][0] == "move_right"
    assert meta["clip"]["sampling_rate"] == 2 and meta["input"] == ["batch", 3, 8, 32, 32]
    assert main(["--ckpt_path", str(tmp_path / "nope.ckpt"), "--format", "onnx", "--out", str(out)]) == 2
    assert "nope.ckpt" in capsys.readouterr().err
