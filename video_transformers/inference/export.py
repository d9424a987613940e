"""Export a model to ONNX, TorchScript or a ``torch.export`` ExportedProgram, with a dynamic batch size.

Every format takes normalised video ``(B, C, T, H, W)`` float32 and returns ``(B, num_classes)`` logits; the
sizes other than ``B`` are fixed by the model (frames, crop). A JSON sidecar (``<out>.json``) records the
class names and the clip settings (frames, sampling rate, fps, crop, short side, mean/std) that inputs must
be prepared with. :func:`max_abs_diff` checks an exported file against the eager model.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from video_transformers.layers import set_fused_attention

log = logging.getLogger(__name__)

Format = Literal["onnx", "torchscript", "exported-program"]
FORMATS: tuple[str, ...] = ("onnx", "torchscript", "exported-program")
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "exported-program": ".pt2"}


def example_input(model: nn.Module, batch: int = 2) -> torch.Tensor:
    """A random ``(batch, C, T, S, S)`` input of the model's sizes (batch 2: export must not specialise on 1)."""
    chans = getattr(model.patch_embed, "in_chans", 3)
    size = model.img_size
    return torch.randn(batch, chans, model.num_frames, size, size, generator=torch.Generator().manual_seed(0))


class _Eager(nn.Module):
    """The model on its SDPA path in eval mode, as a plain ``forward(video) -> logits`` module."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.model(video)


def export_model(model: nn.Module, fmt: Format, out: Path, *, metadata: dict | None = None) -> Path:
    """Write ``model`` to ``out`` in ``fmt`` with a dynamic batch dimension; returns the path written."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {FORMATS}")
    model = model.cpu().eval()
    set_fused_attention(model, True)
    wrapped = _Eager(model).eval()
    x = example_input(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings on shape checks: shapes are fixed except batch
        if fmt == "onnx":
            # The TorchScript-based exporter: the dynamo one needs onnxscript, which this suite does not require.
            torch.onnx.export(
                wrapped,
                (x,),
                str(out),
                dynamo=False,
                input_names=["video"],
                output_names=["logits"],
                dynamic_axes={"video": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=17,
            )
        elif fmt == "torchscript":
            traced = torch.jit.trace(wrapped, (x,), check_trace=False)
            torch.jit.save(traced, str(out))
        else:
            batch = torch.export.Dim("batch", min=1, max=4096)
            program = torch.export.export(wrapped, (x,), dynamic_shapes=({0: batch},))
            torch.export.save(program, str(out))
    if metadata is not None:
        sidecar = out.with_name(out.name + ".json")
        sidecar.write_text(json.dumps({"format": fmt, **metadata}, indent=1))
    log.info("exported %s to %s (%s)", type(model).__name__, out, fmt)
    return out


def load_exported(path: Path, fmt: Format):  # noqa: ANN201 (a callable: tensor -> tensor)
    """A callable ``(B, C, T, H, W) tensor -> logits tensor`` running the exported file."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: torch.from_numpy(session.run(None, {"video": x.numpy()})[0])
    if fmt == "torchscript":
        module = torch.jit.load(str(path), map_location="cpu")
        return lambda x: module(x)
    program = torch.export.load(str(path)).module()
    return lambda x: program(x)


@torch.no_grad()
def max_abs_diff(model: nn.Module, path: Path, fmt: Format, batches: Sequence[int] = (1, 3)) -> dict[int, float]:
    """Largest ``|exported - eager|`` logit difference per batch size, on random inputs."""
    run = load_exported(path, fmt)
    model = model.cpu().eval()
    diffs = {}
    for b in batches:
        x = example_input(model, b)
        diffs[b] = float((run(x).float() - model(x)).abs().max())
    return diffs
