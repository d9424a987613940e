"""``vt info``: parameters, GFLOPs per view, views and attention layout of models, as the papers tabulate them.

    vt info --model vivit_base_factorised_encoder_16x2 [--num_frames 16 --img_size 224 --views 4x3 --embed_dim 384]
    vt info --config configs/vivit_factorised.yaml
    vt info --all [--format md|csv|json]
    vt info --pretrained [NAME | hub id | path] [--format md|csv|json]   # known official checkpoints

GFLOPs are multiply-adds / 1e9 (``FlopCounterMode`` FLOPs / 2), the convention of fvcore and of the
TimeSformer, ViViT and UniFormerV2 papers; softmax, normalisation and activations are not counted.
Counting runs on the meta device (see :mod:`video_transformers.utils.profile`), so paper sizes take seconds.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import io
import json
import sys
from typing import Any

import yaml

from video_transformers.lit.multiview import parse_views
from video_transformers.models import get_entry, list_models
from video_transformers.utils.profile import ModelProfile, profile_model

_CONFIG_KEYS = ("--model.", "--data.", "--trainer.")
CONVENTION = (
    "GFLOPs = multiply-adds / 1e9 per view (torch FlopCounterMode FLOPs / 2, as fvcore and the papers count; "
    "softmax, norms and activations not counted). TFLOPs = GFLOPs x views / 1000. "
    "attention: calls x [sequences x queries x keys] per view. Ratios are ours / paper."
)


def _parse_overrides(extra: list[str]) -> dict[str, Any]:
    """``--embed_dim 384 --qkv_bias=false`` -> ``{"embed_dim": 384, "qkv_bias": False}`` (values are YAML)."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(extra):
        arg = extra[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise ValueError(f"unexpected argument {arg!r}; overrides are --name value")
        if "=" in arg:
            key, value = arg[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(extra):
                raise ValueError(f"override {arg} has no value")
            key, value = arg[2:], extra[i + 1]
            i += 2
        out[key.replace("-", "_")] = yaml.safe_load(value)
    return out


def _split_config_args(extra: list[str]) -> tuple[list[str], list[str]]:
    """``--model.* / --data.* / --trainer.*`` arguments with their values (for the config reader); the rest."""
    config: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(extra):
        target = config if extra[i].startswith(_CONFIG_KEYS) else rest
        takes_value = "=" not in extra[i] and i + 1 < len(extra) and not extra[i + 1].startswith("--")
        target += extra[i : i + 1 + takes_value]
        i += 1 + takes_value
    return config, rest


def _signature_defaults(cls: type) -> dict[str, Any]:
    return {
        n: p.default
        for n, p in inspect.signature(cls.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def _is_paper_config(name: str, overrides: dict[str, Any]) -> bool:
    """Whether ``overrides`` leave the registered (paper) configuration unchanged."""
    entry = get_entry(name)
    paper = {**_signature_defaults(entry.cls), **entry.defaults}
    return all(k in paper and paper[k] == v for k, v in overrides.items())


def _ratio(ours: float, paper: Any, comparable: bool) -> float | None:
    if not comparable or not isinstance(paper, int | float) or paper == 0:
        return None
    return ours / paper


def make_row(profile: ModelProfile, views: tuple[int, int], comparable: bool) -> dict[str, Any]:
    """One table row as plain values (the csv/json output)."""
    paper = profile.paper
    _, _, t, h, w = profile.input_shape
    return {
        "model": profile.name,
        "input": f"{t}x{h}x{w}",
        "params_m": profile.params_m,
        "paper_params_m": paper.get("params_m"),
        "params_ratio": _ratio(profile.params_m, paper.get("params_m"), comparable),
        "gflops_per_view": profile.gflops,
        "paper_gflops": paper.get("gflops"),
        "gflops_ratio": _ratio(profile.gflops, paper.get("gflops"), comparable),
        "views": f"{views[0]}x{views[1]}",
        "tflops_total": profile.gflops * views[0] * views[1] / 1000,
        "tokens": profile.tokens,
        "attention": profile.attention,
        "pattern": profile.pattern,
        "paper_source": paper.get("source") if paper else None,
        "paper_config": comparable,
        "counted_on": profile.flops.device,
    }


def _fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and spec:
        return format(value, spec)
    return str(value)


def to_markdown(rows: list[dict[str, Any]]) -> str:
    header = [
        "model",
        "input TxHxW",
        "params (M)",
        "paper",
        "ratio",
        "GFLOPs/view",
        "paper",
        "ratio",
        "views",
        "TFLOPs total",
        "tokens",
        "attention",
        "pattern",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        cells = [
            r["model"] + ("" if r["paper_config"] else " *"),
            r["input"],
            _fmt(r["params_m"], ".2f"),
            _fmt(r["paper_params_m"], ".4g"),
            _fmt(r["params_ratio"], ".3f"),
            _fmt(r["gflops_per_view"], ".4g"),
            _fmt(r["paper_gflops"], ".4g"),
            _fmt(r["gflops_ratio"], ".3f"),
            r["views"],
            _fmt(r["tflops_total"], ".3g"),
            _fmt(r["tokens"]),
            r["attention"].replace("|", "/"),
            r["pattern"].replace("|", "/"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [CONVENTION]
    if any(not r["paper_config"] for r in rows):
        notes.append("* configuration differs from the registered paper one: no paper ratio.")
    sources = sorted({r["paper_source"] for r in rows if r["paper_source"]})
    if sources:
        notes.append("Paper figures: " + "; ".join(sources) + ".")
    if any(r["counted_on"] != "meta" for r in rows):
        notes.append("Some counts used a real CPU forward (no meta kernel for an op).")
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _from_config(paths: list[str], config_args: list[str]) -> tuple[str, dict[str, Any], tuple[int, int]]:
    """(backbone, overrides, views) of ``vt`` configs, read by the parser ``vt fit`` uses (bases, defaults, links,
    ``--data.* / --model.*`` overrides); the class count is the data's, else the one the dataset fixes."""
    from video_transformers.cli import read_config
    from video_transformers.data import VideoDataError, VideoDataModule
    from video_transformers.data.formats import get_format

    cfg = read_config([a for path in paths for a in ("--config", path)] + config_args)
    model, data = cfg.model, cfg.data
    overrides: dict[str, Any] = {"num_frames": model.num_frames, "img_size": model.img_size}  # linked from data
    try:
        overrides["num_classes"] = VideoDataModule(**data.as_dict()).num_classes
    except (VideoDataError, OSError, ValueError) as e:
        known = get_format(data.dataset, split_id=data.split_id).num_classes
        if known is not None:
            overrides["num_classes"] = known
        else:
            print(f"vt info: cannot read the class count of {data.dataset} data ({e}); counting the head as the"
                  " model's default", file=sys.stderr)  # fmt: skip
    overrides.update(model.backbone_kwargs or {})  # the same precedence as VideoClassifier
    return model.backbone, overrides, (int(data.test_clips), int(data.test_crops))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vt info",
        description="Parameters, GFLOPs per view and attention layout, next to the papers' figures.",
        epilog=CONVENTION + " Any other --name value is passed to the model constructor.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", action="append", help="registered name or shell pattern (repeatable)")
    src.add_argument(
        "--config",
        action="append",
        help="vt config(s), read as vt fit reads them (repeatable; --data.* / --model.* override them)",
    )
    src.add_argument("--all", action="store_true", help="every registered model at its paper configuration")
    src.add_argument(
        "--pretrained",
        nargs="?",
        const="",
        metavar="SOURCE",
        help="the table of known official checkpoints; with a catalog name, hub id or path: that one",
    )
    p.add_argument("--num_frames", type=int, help="frames per view (default: the model's)")
    p.add_argument("--img_size", type=int, help="crop side in pixels (default: the model's)")
    p.add_argument("--views", help="CLIPSxCROPS per video (default: the paper's views if given, else 1x1)")
    p.add_argument("--format", choices=("md", "csv", "json"), default="md")
    return p


def main(argv: list[str]) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.pretrained is not None:
        from video_transformers.commands.info_pretrained import show_pretrained

        return show_pretrained(args.pretrained, args.format)
    try:
        config_args, extra = _split_config_args(extra) if args.config else ([], extra)
        overrides = _parse_overrides(extra)
        views = parse_views(args.views) if args.views else None
        if args.config:
            name, cfg_overrides, cfg_views = _from_config(args.config, config_args)
            jobs = [(name, {**cfg_overrides, **overrides})]
            views = views or cfg_views
        else:
            patterns = ["*"] if args.all else args.model
            names: list[str] = []
            for pattern in patterns:
                matched = list_models(pattern) if any(c in pattern for c in "*?[") else [get_entry(pattern).name]
                if not matched:
                    raise KeyError(f"no registered model matches {pattern!r}")
                names += [n for n in matched if n not in names]
            jobs = [(n, dict(overrides)) for n in names]
        for key in ("num_frames", "img_size"):
            if getattr(args, key) is not None:
                for _, job in jobs:
                    job[key] = getattr(args, key)
        rows = []
        for name, job in jobs:
            profile = profile_model(name, **job)
            paper_views = profile.paper.get("views")
            row_views = views or (parse_views(paper_views) if paper_views else (1, 1))
            rows.append(make_row(profile, row_views, _is_paper_config(name, job)))
    except (KeyError, TypeError, ValueError, OSError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"vt info: error: {msg}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    elif args.format == "csv":
        print(to_csv(rows), end="")
    else:
        print(to_markdown(rows), end="")
    return 0
