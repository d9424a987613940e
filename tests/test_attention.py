"""The shared ``Attention`` module: SDPA path = manual path, cross-attention = ``nn.MultiheadAttention``,
attention maps are distributions, dropout is off in eval."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from video_transformers.layers import Attention, Encoder, attention_maps, set_fused_attention
from video_transformers.layers.attention import CPU_BF16_EAGER_MAX_KEYS

DIM, HEADS = 32, 4


def _attn(**kwargs) -> Attention:
    torch.manual_seed(0)
    attn = Attention(DIM, HEADS, **kwargs)
    nn.init.normal_(attn.qkv.bias, std=0.1)  # non-zero biases so the bias split is exercised
    nn.init.normal_(attn.proj.bias, std=0.1)
    return attn


def _tokens(b: int, n: int, seed: int) -> torch.Tensor:
    return torch.randn(b, n, DIM, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cross", [False, True])
def test_sdpa_equals_manual(cross):
    attn = _attn().eval()
    x, ctx = _tokens(2, 7, 1), (_tokens(2, 5, 2) if cross else None)
    fused = attn(x, ctx)
    attn.fused = False
    manual = attn(x, ctx)
    torch.testing.assert_close(fused, manual, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("cross", [False, True])
def test_matches_multihead_attention_with_copied_weights(cross):
    attn = _attn().eval()
    mha = nn.MultiheadAttention(DIM, HEADS, batch_first=True).eval()
    with torch.no_grad():
        mha.in_proj_weight.copy_(attn.qkv.weight)
        mha.in_proj_bias.copy_(attn.qkv.bias)
        mha.out_proj.weight.copy_(attn.proj.weight)
        mha.out_proj.bias.copy_(attn.proj.bias)
    x = _tokens(2, 7, 1)
    ctx = _tokens(2, 5, 2) if cross else x
    expected, expected_maps = mha(x, ctx, ctx, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(attn(x, ctx if cross else None), expected, atol=1e-6, rtol=1e-5)
    with attention_maps(attn):
        attn(x, ctx if cross else None)
    torch.testing.assert_close(attn.last_attn, expected_maps, atol=1e-6, rtol=1e-5)


def test_attention_maps_are_row_distributions_and_restore_the_fast_path():
    torch.manual_seed(0)
    enc = Encoder(DIM, 2, HEADS).eval()
    x = _tokens(3, 6, 1)
    fused = enc(x)
    with attention_maps(enc) as maps:
        out = enc(x)
    assert sorted(maps) == ["blocks.0.attn", "blocks.1.attn"]
    for name, m in maps.items():
        assert m.last_attn.shape == (3, HEADS, 6, 6), name
        assert (m.last_attn >= 0).all(), name
        torch.testing.assert_close(m.last_attn.sum(-1), torch.ones(3, HEADS, 6), msg=name)
        assert not m.keep_attn, f"{name}: attention_maps left the manual path on"
    torch.testing.assert_close(out, fused, atol=1e-6, rtol=1e-5)


def test_set_fused_attention_switches_every_module():
    enc = Encoder(DIM, 3, HEADS)
    set_fused_attention(enc, False)
    assert [b.attn.fused for b in enc.blocks] == [False] * 3
    set_fused_attention(enc, True)
    assert [b.attn.fused for b in enc.blocks] == [True] * 3


@pytest.mark.parametrize("fused", [True, False])
def test_dropout_only_in_training(fused):
    attn = _attn(attn_drop=0.5, proj_drop=0.5)
    attn.fused = fused
    ref = _attn()  # same seed -> same weights, no dropout
    x = _tokens(2, 9, 1)
    attn.eval()
    torch.testing.assert_close(attn(x), ref.eval()(x))
    attn.train()
    torch.manual_seed(3)
    a = attn(x)
    torch.manual_seed(4)
    b = attn(x)
    assert not torch.allclose(a, b), "dropout had no effect in training mode"


def test_rejects_indivisible_width():
    with pytest.raises(ValueError, match="not divisible by num_heads 5"):
        Attention(32, 5)


@pytest.mark.parametrize(
    ("tokens", "bf16", "sdpa_calls"),
    [(CPU_BF16_EAGER_MAX_KEYS, True, 0), (CPU_BF16_EAGER_MAX_KEYS + 1, True, 1), (CPU_BF16_EAGER_MAX_KEYS, False, 1)],
)
def test_short_bf16_cpu_sequences_skip_the_flash_kernel(monkeypatch, tokens, bf16, sdpa_calls):
    """bf16 on a CPU: up to CPU_BF16_EAGER_MAX_KEYS keys the explicit product (measured faster) gives the same
    output as SDPA; longer sequences and fp32 go through SDPA."""
    attn, x = _attn().eval(), _tokens(2, tokens, 3)
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(
        torch.nn.functional, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or sdpa(*a, **k)
    )
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = attn(x)
    assert len(calls) == sdpa_calls
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        q, k, v = attn.qkv(x).reshape(2, tokens, 3, HEADS, DIM // HEADS).permute(2, 0, 3, 1, 4)
        ref = attn.proj(sdpa(q, k, v).transpose(1, 2).reshape(2, tokens, DIM))
    torch.testing.assert_close(out.float(), ref.float(), atol=3e-2 if bf16 else 1e-6, rtol=0)
