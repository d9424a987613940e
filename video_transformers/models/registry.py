"""Registry of model variants: ``create_model(name, **overrides)`` and ``list_models()``.

Each entry is a class plus the keyword arguments of its paper configuration, the overrides that make a
tiny copy for unit tests, and the paper's reference figures (parameters, GFLOPs per view) that tests and
``vt info`` compare against. Tests parametrize over :func:`list_models`, so a new variant is tested by
the existing tests as soon as it is registered.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from dataclasses import dataclass, field
from typing import Any

from torch import nn


@dataclass(frozen=True)
class ModelEntry:
    name: str
    cls: type[nn.Module]
    defaults: dict[str, Any]
    tiny: dict[str, Any] = field(default_factory=dict)
    paper: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    cls: type[nn.Module],
    *,
    tiny: dict[str, Any] | None = None,
    paper: dict[str, Any] | None = None,
    **defaults: Any,
) -> None:
    """Register ``name`` as ``cls(**defaults)``; ``tiny`` overrides build a test-sized copy."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _check_kwargs(cls, defaults, f"defaults of {name!r}")
    _check_kwargs(cls, tiny or {}, f"tiny overrides of {name!r}")
    _REGISTRY[name] = ModelEntry(name, cls, dict(defaults), dict(tiny or {}), dict(paper or {}))


def _check_kwargs(cls: type, kwargs: dict[str, Any], what: str) -> None:
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        hints = {k: difflib.get_close_matches(k, params, n=1) for k in unknown}
        hint = ", ".join(f"{k!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for k, h in hints.items())
        raise TypeError(f"{what}: {cls.__name__} has no argument {hint}")


def get_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; unknown names raise ``KeyError`` with the closest matches."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise KeyError(f"unknown model {name!r}{hint} (see video_transformers.list_models())")
    return _REGISTRY[name]


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern``, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build the registered variant ``name``; keyword ``overrides`` replace its paper configuration."""
    entry = get_entry(name)
    _check_kwargs(entry.cls, overrides, f"overrides for {name!r}")
    kwargs = {**entry.defaults, **overrides}
    model = entry.cls(**kwargs)
    model.model_name = name
    return model
