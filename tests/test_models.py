"""Generic tests for every registered variant (parametrized over ``list_models()``, so new variants are covered).

Tiny copies (``get_entry(name).tiny``) check forward/backward, the SDPA path against the manual attention
path, and gradient checkpointing; paper-sized copies on the meta device check the parameter count and the
per-view GFLOPs against the paper's figures recorded in the registry.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import fields

import pytest
import torch
from timm.models import group_parameters

from video_transformers.layers import Attention, set_fused_attention
from video_transformers.models import create_model, get_entry, list_models
from video_transformers.models.base import ViTArgs
from video_transformers.models.timesformer import TimeSformer
from video_transformers.models.uniformerv2 import UniFormerV2
from video_transformers.models.vivit import ViViTFactorisedEncoder
from video_transformers.utils.profile import build_model, count_flops, count_params, video_input_shape

MODELS = list_models()
NUM_CLASSES = 5


def _tiny(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(name, num_classes=NUM_CLASSES, **get_entry(name).tiny)


def _video(model: torch.nn.Module, batch_size: int = 2, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(video_input_shape(model, batch_size), generator=gen)


def test_registry_is_not_empty():
    assert MODELS, "no model registered: importing video_transformers.models should register every family"


@pytest.mark.parametrize("name", MODELS)
def test_signature_lists_every_shared_argument_with_the_family_default(name):
    """The shared ViT arguments are written once (ViTArgs); each model's public signature still lists them,
    keyword-only, with its family's defaults, and the model rejects the ones its family does not take."""
    cls = get_entry(name).cls
    params = inspect.signature(cls.__init__).parameters
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for n, p in params.items() if n != "self")
    for f in fields(ViTArgs):
        if f.name in cls.vit_omit:
            assert f.name not in params
            with pytest.raises(TypeError, match=f"unexpected keyword argument '{f.name}'"):
                cls(**{f.name: getattr(ViTArgs(), f.name)})
        else:
            assert params[f.name].default == getattr(cls.vit_defaults, f.name), f.name


@pytest.mark.parametrize(
    ("cls", "defaults"),
    [
        (TimeSformer, dict(num_frames=8, drop_path_rate=0.1, head_drop_rate=0.0, act="gelu", norm_eps=1e-6)),
        (ViViTFactorisedEncoder, dict(num_frames=32, drop_path_rate=0.0, act="gelu_tanh", norm_eps=1e-6)),
        (UniFormerV2, dict(num_frames=8, drop_path_rate=0.0, head_drop_rate=0.5, act="quick_gelu")),
    ],
)
def test_family_defaults_are_the_papers(cls, defaults):
    """The defaults the model docstrings state: TimeSformer drop path 0.1; ViViT 32 frames and flax's tanh
    GELU (scenic model.py:255); UniFormerV2 QuickGELU and the official ``cls_dropout`` 0.5."""
    params = inspect.signature(cls.__init__).parameters
    assert {k: params[k].default for k in defaults} == defaults


@pytest.mark.parametrize("name", MODELS)
def test_forward_backward_finite(name):
    model = _tiny(name).train()
    out = model(_video(model))
    assert out.shape == (2, NUM_CLASSES), f"{name}: logits {tuple(out.shape)}, expected (2, {NUM_CLASSES})"
    assert torch.isfinite(out).all(), f"{name}: non-finite logits"
    out.logsumexp(-1).sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"{name}: parameters unused by forward (no gradient): {no_grad}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"{name}: non-finite gradients in {bad}"


@pytest.mark.parametrize("name", MODELS)
def test_group_matcher_gives_embeddings_then_one_group_per_block_then_the_head(name):
    """timm's grouping from the model's own ``group_matcher`` (what layer-wise lr decay uses)."""
    model = _tiny(name)
    ids = group_parameters(model, model.group_matcher(), reverse=True)
    assert ids.keys() == dict(model.named_parameters()).keys()
    top = max(ids.values())
    assert ids["patch_embed.proj.weight"] == 0 and ids["head.weight"] == top
    assert sorted(set(ids.values())) == list(range(top + 1))
    blocks = [{re.match(r"^(.*?blocks\.\d+)\.", n)[1] for n, i in ids.items() if i == g} for g in range(1, top)]
    assert all(len(b) == 1 for b in blocks), f"{name}: a middle group is not exactly one block: {blocks}"
    assert len(blocks) == sum(len(m) for n, m in model.named_modules() if n.endswith("blocks") and "global" not in n)


@pytest.mark.parametrize("name", MODELS)
def test_model_args_rebuild_the_architecture(name):
    model = _tiny(name)
    rebuilt = type(model)(**model.model_args)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    model.reset_classifier(3)
    assert model.model_args["num_classes"] == 3


@pytest.mark.parametrize("name", MODELS)
def test_token_grid_is_the_patch_embedding_grid(name):
    model = _tiny(name)
    x = _video(model)
    t, h, w = model.token_grid(x.shape)
    assert model.patch_embed(x).shape[1:3] == (t, h * w)
    assert model.token_grid() == (t, h, w)  # the nominal input


@pytest.mark.parametrize("name", MODELS)
def test_fused_attention_matches_manual(name):
    model = _tiny(name).eval()
    assert any(isinstance(m, Attention) for m in model.modules()), f"{name}: uses no shared Attention module"
    x = _video(model, batch_size=1)
    with torch.no_grad():
        fused = model(x)
        set_fused_attention(model, False)
        manual = model(x)
    torch.testing.assert_close(fused, manual, atol=1e-5, rtol=1e-5, msg=lambda m: f"{name}: SDPA vs manual: {m}")


def _saved_tensor_count(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Forward with a count of the tensors autograd keeps for backward (checkpointed blocks keep none)."""
    count = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal count
        count += 1
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    return out, count


@pytest.mark.parametrize("name", MODELS)
def test_grad_checkpointing_same_output_and_gradients(name):
    x = _video(_tiny(name), batch_size=1)
    results = []
    for enable in (False, True):
        model = _tiny(name).train()
        model.set_grad_checkpointing(enable)
        torch.manual_seed(2)  # same dropout / drop-path draws in both runs (checkpoint restores the RNG)
        out, saved = _saved_tensor_count(model, x)
        out.logsumexp(-1).sum().backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        results.append((out.detach(), grads, saved))
    (out0, grads0, saved0), (out1, grads1, saved1) = results
    if _tiny(name).model_args.get("frozen"):  # a frozen backbone keeps no activations to recompute
        assert saved1 == saved0, f"{name}: checkpointing the frozen backbone changed what autograd keeps"
    else:
        assert saved1 < saved0, f"{name}: set_grad_checkpointing(True) did not reduce saved activations ({saved1})"
    torch.testing.assert_close(out1, out0, atol=1e-5, rtol=1e-5, msg=lambda m: f"{name}: output: {m}")
    assert grads1.keys() == grads0.keys()
    for n in grads0:
        torch.testing.assert_close(grads1[n], grads0[n], atol=1e-5, rtol=1e-4, msg=lambda m, n=n: f"{name}.{n}: {m}")


def _paper(name: str, key: str) -> float:
    value = get_entry(name).paper.get(key)
    if value is None:
        pytest.skip(f"{name}: no paper {key} recorded in the registry")
    return float(value)


@pytest.mark.parametrize("name", MODELS)
def test_paper_parameter_count(name):
    expected = _paper(name, "params_m")
    tol = get_entry(name).paper.get("params_tol", 0.005)
    got = count_params(build_model(name, device="meta")) / 1e6
    assert abs(got / expected - 1) <= tol, f"{name}: {got:.2f}M parameters; paper {expected}M (tolerance {tol:.1%})"


@pytest.mark.parametrize("name", MODELS)
def test_paper_gflops(name):
    expected = _paper(name, "gflops")
    tol = get_entry(name).paper.get("gflops_tol", 0.05)
    model = build_model(name, device="meta")
    got = count_flops(model, torch.empty(video_input_shape(model), device="meta")).gflops
    assert abs(got / expected - 1) <= tol, f"{name}: {got:.1f} GFLOPs/view; paper {expected:.1f} (tolerance {tol:.0%})"
