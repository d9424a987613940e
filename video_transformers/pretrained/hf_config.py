"""``config.json`` of ``transformers``' ViT-family video models (``TimesformerConfig``, ``VivitConfig``) ->
this suite's constructor arguments: the fields both families share, read one way."""

from __future__ import annotations

from typing import Any

from video_transformers.pretrained.errors import PretrainedError

# transformers' hidden_act -> ours: exact GELU, or the tanh approximation under each of its names
# (transformers activations.py: gelu_new, gelu_pytorch_tanh, gelu_fast and gelu_accurate all compute
# 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))).
HF_ACTIVATIONS = {"gelu": "gelu", **dict.fromkeys(
    ("gelu_new", "gelu_pytorch_tanh", "gelu_fast", "gelu_accurate", "gelu_tanh"), "gelu_tanh"
)}  # fmt: skip
# fields every ViT-family config has -> our argument names
VIT_FIELDS = {
    "image_size": "img_size",
    "num_channels": "in_chans",
    "num_frames": "num_frames",
    "hidden_size": "embed_dim",
    "num_hidden_layers": "depth",
    "num_attention_heads": "num_heads",
    "qkv_bias": "qkv_bias",
    "layer_norm_eps": "norm_eps",
    "hidden_act": "act",
}


def square(value: Any, field: str) -> int:
    """A side length given as ``n`` or ``[n, n]``; non-square sizes are refused naming the field."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise PretrainedError(f"config.json: {field} {value!r} is not square; only square frames and patches")
        value = value[0]
    return int(value)


def vit_kwargs(config: dict[str, Any], fields: dict[str, str]) -> dict[str, Any]:
    """Our arguments for the ``fields`` (config name -> argument) that ``config`` has, plus ``mlp_ratio``
    (``intermediate_size / hidden_size``) and ``num_classes`` (``id2label``'s length, else ``num_labels``)."""
    kwargs: dict[str, Any] = {}
    for field, arg in fields.items():
        if field not in config:
            continue
        value = config[field]
        if field in ("image_size", "patch_size"):
            value = square(value, field)
        elif field == "hidden_act":
            if value not in HF_ACTIVATIONS:
                raise PretrainedError(
                    f"config.json: hidden_act {value!r} is not supported; expected one of {sorted(HF_ACTIVATIONS)}"
                )
            value = HF_ACTIVATIONS[value]
        elif field.endswith(("_prob", "_rate", "_eps")):
            value = float(value)
        kwargs[arg] = value
    if "intermediate_size" in config and "hidden_size" in config:
        kwargs["mlp_ratio"] = config["intermediate_size"] / config["hidden_size"]
    labels = len(config.get("id2label") or {}) or config.get("num_labels")
    if labels:
        kwargs["num_classes"] = labels
    return kwargs


__all__ = ["HF_ACTIVATIONS", "VIT_FIELDS", "square", "vit_kwargs"]
