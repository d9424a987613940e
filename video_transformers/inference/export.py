"""Export a model to ONNX, TorchScript or a ``torch.export`` ExportedProgram, with a dynamic batch size, or
as a Hugging Face folder that ``from_pretrained`` reads back (:func:`export_hf`).

Every file format takes normalised video ``(B, C, T, H, W)`` float32 and returns ``(B, num_classes)`` logits;
the sizes other than ``B`` are fixed by the model (frames, crop). A JSON sidecar (``<out>.json``) records the
class names and the clip settings (frames, sampling rate, fps, crop, short side, mean/std) that inputs must
be prepared with; the Hugging Face folder keeps them in its ``config.json``. :func:`max_abs_diff` checks an
export against the eager model.
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

Format = Literal["onnx", "torchscript", "exported-program", "hf"]
FORMATS: tuple[str, ...] = ("onnx", "torchscript", "exported-program")  # one file, any nn.Module
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "exported-program": ".pt2"}
HF = "hf"  # a Hugging Face folder (:func:`export_hf`): needs the model's recorded constructor call


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


def export_hf(
    model: nn.Module,
    spec: dict | None,
    out: Path,
    *,
    clip: dict | None = None,
    source: str | None = None,
    hub_id: str | None = None,
    report: Path | None = None,
) -> Path:
    """Write ``model`` as a Hugging Face folder (``config.json``, ``model.safetensors``, ``README.md`` model
    card; :mod:`video_transformers.pretrained.hf_folder`). ``spec`` is its recorded constructor call
    (``build_recorded``); ``clip`` the clip settings it was evaluated with; ``source`` the checkpoint it came
    from, beside which a ``test_report.json`` is looked for unless ``report`` names one."""
    from video_transformers.pretrained.hf_folder import build_config, save_folder
    from video_transformers.pretrained.hub import resolve_source
    from video_transformers.pretrained.model_card import build_card, checkpoint_facts, find_test_report, read_report

    local = resolve_source(source) if source else None
    if report is None and local is not None:
        report = find_test_report(local)
    config = build_config(model, spec, clip=clip)
    shown = source if source is None or not Path(source).expanduser().exists() else Path(source).name
    card = build_card(
        config,
        report=read_report(report),
        facts=checkpoint_facts(local) if local is not None else None,
        hub_id=hub_id,
        source=shown,
    )
    return save_folder(model, out, spec=spec, clip=clip, card=card, report=report)


def load_exported(path: Path, fmt: Format):  # noqa: ANN201 (a callable: tensor -> tensor)
    """A callable ``(B, C, T, H, W) tensor -> logits tensor`` running the exported file (or folder)."""
    if fmt == HF:
        from video_transformers.pretrained import from_pretrained

        model = from_pretrained(path)
        return lambda x: model(x)
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
