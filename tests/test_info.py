"""``vt info`` in-process, and the FLOP counting helpers it rests on (checked against hand counts)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from video_transformers.cli import main
from video_transformers.layers import Attention
from video_transformers.models import create_model, get_entry, list_models
from video_transformers.utils.profile import count_flops, count_params, summarize_attention, video_input_shape

FE = "vivit_base_factorised_encoder_16x2"


def _info(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(["info", *args])
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_paper_size_params_and_gflops(capsys):
    code, out, err = _info(capsys, "--model", FE)
    assert code == 0, err
    row = next(line for line in out.splitlines() if line.startswith(f"| {FE} |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    params, gflops = float(cells[2]), float(cells[5])
    assert abs(params / 115.1 - 1) < 0.005, f"{params}M parameters; ViViT Table 2: 115.1M"
    assert abs(gflops / 284.0 - 1) < 0.05, f"{gflops} GFLOPs/view; ViViT Table 2: 284.4"
    assert "multiply-adds" in out  # the convention is stated with the table


def test_views_and_overrides_change_totals_not_paper_ratio(capsys):
    code, out, err = _info(capsys, "--model", FE, "--views", "4x3", "--num_frames", "16", "--embed_dim=384",
                           "--num_heads", "6", "--format", "json")  # fmt: skip
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["input"] == "16x224x224" and row["views"] == "4x3" and row["tokens"] == 8 * 14 * 14
    assert row["tflops_total"] == pytest.approx(row["gflops_per_view"] * 12 / 1000)
    assert row["gflops_ratio"] is None and row["paper_config"] is False  # not the paper's configuration
    model = create_model(FE, num_frames=16, embed_dim=384, num_heads=6)
    assert row["params_m"] == pytest.approx(count_params(model) / 1e6)
    assert row["attention"] == "12 x [8x197²], 4 x [1x9²]"  # 8 temporal indices of 196+CLS; 8+CLS


def test_csv_has_one_row_per_model(capsys):
    code, out, _ = _info(capsys, "--model", "vivit_base_*", "--format", "csv", "--num_frames", "4", "--img_size", "32")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].startswith("model,input,params_m")
    assert [line.split(",")[0] for line in lines[1:]] == list_models("vivit_base_*")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "vivit_base_factorised_encodr_16x2"], "did you mean"),
        (["--model", FE, "--embed_dims", "8"], "embed_dims"),
        (["--model", FE, "--views", "4by3"], "4by3"),
        (["--model", "nothing_like_this_*"], "nothing_like_this_*"),
    ],
)
def test_errors_name_the_culprit(capsys, args, message):
    code, _, err = _info(capsys, *args)
    assert code == 2 and message in err


def test_attention_flops_match_hand_count():
    n, dim, heads = 10, 64, 4
    attn = Attention(dim, heads)
    got = count_flops(attn, torch.zeros(1, n, dim))
    macs = n * dim * 3 * dim + 2 * n * n * dim + n * dim * dim  # qkv, q k^T and attn v over all heads, proj
    assert got.flops == 2 * macs and got.gflops == macs / 1e9
    assert summarize_attention(got.attention) == "1 x [1x10²]"


def test_conv_and_linear_flops_match_hand_count():
    model = nn.Sequential(
        nn.Conv3d(3, 8, kernel_size=(2, 4, 4), stride=(2, 4, 4)), nn.Flatten(), nn.Linear(8 * 2 * 2 * 2, 5)
    )
    got = count_flops(model, torch.zeros(1, 3, 4, 8, 8))
    conv = (2 * 2 * 2) * 8 * (3 * 2 * 4 * 4)  # output positions x channels x kernel volume
    assert got.macs == conv + 64 * 5


def test_meta_count_equals_real_count():
    name = FE
    kwargs = dict(get_entry(name).tiny, num_classes=5)
    real = create_model(name, **kwargs)
    with torch.device("meta"):
        meta = create_model(name, **kwargs)
    shape = video_input_shape(real)
    real_count, meta_count = count_flops(real, torch.zeros(shape)), count_flops(meta, torch.empty(shape, device="meta"))
    assert meta_count.device == "meta" and real_count.flops == meta_count.flops > 0
    assert real_count.by_op == meta_count.by_op
    assert all(p.requires_grad for p in real.parameters())  # counting leaves the model trainable


def test_config_is_read_as_vt_fit_reads_it(capsys):
    """Bases, data configs and overrides: the class count is the dataset's, even without the data at hand."""
    from tests.conftest import REPO

    config = str(REPO / "configs" / "vivit_spatio_temporal.yaml")
    counts = {}
    for data in ("kinetics400", "ucf101", "hmdb51", "ssv2"):
        code, out, err = _info(capsys, "--config", config, "--config", str(REPO / "configs/data" / f"{data}.yaml"),
                               "--data.num_frames", "16", "--format", "json")  # fmt: skip
        assert code == 0, err
        (row,) = json.loads(out)
        assert row["input"] == "16x224x224"
        counts[data] = row["params_m"]
    head = 768 + 1  # one class: weights and bias
    for data, classes in (("ucf101", 101), ("hmdb51", 51), ("ssv2", 174)):
        assert counts["kinetics400"] - counts[data] == pytest.approx((400 - classes) * head / 1e6), data
