"""``vt info --pretrained``: the known official checkpoints, one of them, or what any checkpoint source holds.

    vt info --pretrained                                      # the catalog (md | csv | json)
    vt info --pretrained uniformerv2_b16_k710_k400_8x224      # one entry: sources, sha256, cache state
    vt info --pretrained hf-hub:org/name@v1                   # any from_pretrained source: its architecture

The same strings as ``from_pretrained`` / ``--ckpt_path`` / ``--model.init_from`` (see
:mod:`video_transformers.pretrained.hub`).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import Any

import torch

from video_transformers.pretrained import PretrainedError, catalog, from_pretrained
from video_transformers.pretrained.common import detect_format, weights_dir
from video_transformers.pretrained.hub import hub_cache, parse_hub_id, resolve_source


def docs_section() -> str:
    """The catalog as docs/pretrained.md shows it: checkpoints, their sources, notes."""
    return "\n".join(
        [
            catalog.checkpoints_markdown(),
            "Sources (status and sha256 as checked on the date given; `gone` sources are not tried):",
            "",
            catalog.sources_markdown(),
            catalog.notes_markdown(),
        ]
    )


def cache_state(source: catalog.Source, entry: catalog.Checkpoint) -> str:
    """Where a source's weights are on this machine, if anywhere (no network)."""
    from huggingface_hub import try_to_load_from_cache

    local = weights_dir() / (entry.name if source.kind == "hf-folder" else source.filename)
    if local.exists():
        return f"local copy {local}"
    if source.hub_id is None:
        return "not downloaded"
    hub = parse_hub_id(source.hub_id)
    filename = hub.filename or source.file or "config.json"
    cached = try_to_load_from_cache(hub.repo_id, filename, revision=hub.revision)
    return f"cached {cached}" if isinstance(cached, str) else f"not cached ({hub_cache()})"


def describe_entry(entry: catalog.Checkpoint) -> str:
    lines = [
        f"{entry.name}: {entry.family}, {entry.dataset} (pretraining: {entry.pretraining})",
        f"  model      {entry.model}, {entry.num_frames} frames x {entry.img_size} px",
        f"  mean/std   {list(entry.mean)} / {list(entry.std)}  ({entry.normalisation_source})",
        f"  top-1      {entry.top1} with {entry.views} views  ({entry.top1_source})",
    ]
    if entry.paper_top1 is not None:
        lines.append(f"  paper      {entry.paper_top1}  ({entry.paper_source})")
    if entry.note:
        lines.append(f"  note       {entry.note}")
    for s in entry.sources:
        reader = s.format or "no reader here"
        lines.append(f"  source     {s.hub_id or s.location}  [{s.status}, {reader}]")
        lines.append(f"             checked {s.checked}")
        sha = s.sha256 or (f"{s.sha256_prefix}... (prefix)" if s.sha256_prefix else "unknown")
        lines.append(f"             sha256 {sha}" + (f"  ({s.sha256_source})" if s.sha256_source else ""))
        if s.status != "gone":
            lines.append(f"             {cache_state(s, entry)}")
    return "\n".join(lines)


def describe_source(source: str) -> dict[str, Any]:
    """Load ``source`` and report its format, architecture, size and normalisation."""
    from video_transformers.pretrained.lightning_ckpt import build_recorded
    from video_transformers.utils.profile import count_flops, video_input_shape

    path = resolve_source(source)
    model, spec = build_recorded(lambda: from_pretrained(source))
    out: dict[str, Any] = {
        "source": source,
        "path": str(path),
        "format": detect_format(path),
        "class": spec["class"] if spec else type(model).__name__,
        "kwargs": spec["kwargs"] if spec else None,
        "params": sum(p.numel() for p in model.parameters()),
        "input": list(video_input_shape(model)),
        "mean": list(model.mean),
        "std": list(model.std),
        "num_classes": model.num_classes,
        "class_names": (model.class_names or [])[:5],
    }
    if spec:
        cls = type(model)
        with torch.device("meta"):
            meta = cls(**spec["kwargs"])
        out["gflops_per_view"] = count_flops(meta, torch.empty(video_input_shape(meta), device="meta")).gflops
    return out


def show_pretrained(target: str, fmt: str) -> int:
    try:
        if not target:
            text = {"md": docs_section, "csv": catalog.to_csv, "json": lambda: json.dumps(catalog.rows(), indent=2)}
            print(text[fmt](), end="" if fmt != "json" else "\n")
        elif (entry := catalog.get(target)) is not None:
            if fmt == "json":
                print(
                    json.dumps({**catalog.rows([target])[0], "sources": [asdict(s) for s in entry.sources]}, indent=2)
                )
            elif fmt == "csv":
                print(catalog.to_csv([target]), end="")
            else:
                print(describe_entry(entry))
        else:
            info = describe_source(target)
            if fmt == "json":
                print(json.dumps(info, indent=2))
            else:
                for key, value in info.items():
                    shown = f"{value / 1e6:.2f} M" if key == "params" else value
                    shown = f"{value:.4g}" if key == "gflops_per_view" else shown
                    print(f"{key:<16}{shown}")
    except (PretrainedError, ValueError, KeyError, OSError) as e:
        print(f"vt info: error: {e}", file=sys.stderr)
        return 2
    return 0


__all__ = ["describe_entry", "describe_source", "docs_section", "show_pretrained"]

if __name__ == "__main__":  # the catalog section of docs/pretrained.md
    print(docs_section(), end="")
