"""Counting parameters, FLOPs and attention work of a video model, cheaply enough for paper sizes on a CPU.

FLOPs are counted with :class:`torch.utils.flop_counter.FlopCounterMode`, which counts a multiply-add
as 2 FLOPs and covers matmuls, convolutions and attention (``aten.mm/addmm/bmm/convolution``; SDPA is run
on its math backend so its matmuls are counted) but not element-wise ops (softmax, LayerNorm, GELU): the
coverage of fvcore, which the TimeSformer, ViViT and UniFormerV2 papers used. Papers report fvcore's
count, i.e. multiply-adds, as "FLOPs"; :attr:`FlopCount.gflops` is therefore ``FLOPs / 2 / 1e9`` to compare
with their tables.

Counting runs on the ``meta`` device by default: the model and input have shapes but no storage, so a
paper-sized forward takes seconds and no memory. If an op has no meta kernel, :func:`count_flops` falls
back to a real forward on the CPU and says so in :attr:`FlopCount.device`.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

from video_transformers.models import create_model, get_entry
from video_transformers.models.base import VideoTransformer

log = logging.getLogger(__name__)


def count_params(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameter elements (works on the meta device)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@dataclass(frozen=True)
class AttentionCall:
    """One scaled-dot-product attention call: ``seqs`` sequences of ``queries`` attending to ``keys``."""

    seqs: int
    heads: int
    queries: int
    keys: int

    def __str__(self) -> str:
        n = f"{self.queries}²" if self.queries == self.keys else f"{self.queries}x{self.keys}"
        return f"{self.seqs}x{n}"


@dataclass
class FlopCount:
    """FLOPs of one call (``FlopCounterMode`` convention: a multiply-add is 2 FLOPs)."""

    flops: int
    by_op: dict[str, int]
    device: str
    attention: list[AttentionCall] = field(default_factory=list)

    @property
    def macs(self) -> int:
        return self.flops // 2

    @property
    def gflops(self) -> float:
        """Multiply-adds / 1e9: what the papers (via fvcore) call GFLOPs."""
        return self.flops / 2 / 1e9


class _RecordAttention(TorchFunctionMode):
    """Record the shapes of every ``F.scaled_dot_product_attention`` call (works on any device)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[AttentionCall] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 (torch protocol)
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            q, k = args[0], args[1]
            seqs = math.prod(q.shape[:-3]) if q.ndim > 3 else 1
            heads = q.shape[-3] if q.ndim > 2 else 1
            self.calls.append(AttentionCall(seqs, heads, q.shape[-2], k.shape[-2]))
        return func(*args, **kwargs)


def count_flops(model: nn.Module, x: torch.Tensor, *, backward: bool = False) -> FlopCount:
    """FLOPs of ``model(x)`` in eval mode (``backward=True``: forward + backward of ``sum(output)``, train mode).

    Runs on whatever device ``model`` and ``x`` are on; put both on ``meta`` to count at paper size for free.
    """
    was_training = model.training
    model.train(backward)
    recorder = _RecordAttention()
    # Forward-only: switch parameters' requires_grad off rather than using no_grad, whose views of parameters
    # (e.g. ``token.expand(b, -1, -1)`` passed into a submodule) break FlopCounterMode's module tracker.
    frozen = [] if backward else [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        # The math SDPA backend decomposes into matmuls FlopCounterMode counts; the CPU flash kernel has no
        # FLOP formula and would be counted as zero.
        with FlopCounterMode(display=False) as counter, recorder, sdpa_kernel(SDPBackend.MATH):
            out = model(x)
            if backward:
                out.float().sum().backward()
    finally:
        model.train(was_training)
        for p in frozen:
            p.requires_grad_(True)
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return FlopCount(int(counter.get_total_flops()), by_op, str(x.device), recorder.calls)


def build_model(name: str, *, device: str | torch.device = "meta", **overrides: Any) -> nn.Module:
    """``create_model(name, **overrides)`` with parameters allocated on ``device`` (``meta``: shapes only)."""
    with torch.device(device):
        return create_model(name, **overrides)


def video_input_shape(model: nn.Module, batch_size: int = 1) -> tuple[int, int, int, int, int]:
    """``(B, C, T, H, W)`` the model expects, from its ``num_frames`` / ``img_size`` and first conv."""
    for attr in ("num_frames", "img_size"):
        if not isinstance(getattr(model, attr, None), int):
            raise AttributeError(f"{type(model).__name__} has no integer `{attr}`; cannot infer its input size")
    in_chans = getattr(model, "in_chans", None)
    if in_chans is None:
        conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Conv3d)), None)
        in_chans = conv.in_channels if conv is not None else 3
    return (batch_size, in_chans, model.num_frames, model.img_size, model.img_size)


def attention_pattern(model: nn.Module) -> str:
    """A short description of the attention: the ``attention_pattern`` attribute, else the class docstring's
    first line."""
    pattern = getattr(model, "attention_pattern", None)
    if isinstance(pattern, str) and pattern:
        return pattern
    doc = (type(model).__doc__ or "").strip()
    return doc.splitlines()[0].strip().replace("``", "") if doc else type(model).__name__


def summarize_attention(calls: list[AttentionCall]) -> str:
    """``12 x [16x197²]`` = 12 calls of 16 sequences of 197 tokens, in order of first appearance."""
    counts = Counter(calls)
    return ", ".join(f"{n} x [{call}]" for call, n in counts.items())


@dataclass
class ModelProfile:
    """What ``vt info`` prints for one model at one input size."""

    name: str
    kwargs: dict[str, Any]
    input_shape: tuple[int, ...]
    params: int
    flops: FlopCount
    tokens: int | None
    pattern: str
    paper: dict[str, Any]

    @property
    def params_m(self) -> float:
        return self.params / 1e6

    @property
    def gflops(self) -> float:
        return self.flops.gflops

    @property
    def attention(self) -> str:
        return summarize_attention(self.flops.attention)


def _num_tokens(model: nn.Module) -> int | None:
    """Patch tokens per clip at the nominal input (the model's ``token_grid``), ``None`` for other models."""
    return math.prod(model.token_grid()) if isinstance(model, VideoTransformer) else None


def profile_model(name: str, **overrides: Any) -> ModelProfile:
    """Parameters, per-view FLOPs, tokens and attention calls of ``name`` at batch 1.

    Counts on the meta device; falls back to a real CPU forward (logged) if an op lacks a meta kernel.
    """
    entry = get_entry(name)
    model = build_model(name, device="meta", **overrides)
    shape = video_input_shape(model)
    try:
        flops = count_flops(model, torch.empty(shape, device="meta"))
    except (NotImplementedError, RuntimeError) as e:
        log.warning("%s: FLOP counting on the meta device failed (%s); counting with a real CPU forward", name, e)
        model = build_model(name, device="cpu", **overrides)
        flops = count_flops(model, torch.zeros(shape))
    return ModelProfile(
        name=name,
        kwargs={**entry.defaults, **overrides},
        input_shape=shape,
        params=count_params(model),
        flops=flops,
        tokens=_num_tokens(model),
        pattern=attention_pattern(model),
        paper=dict(entry.paper),
    )
