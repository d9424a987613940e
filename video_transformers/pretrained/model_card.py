"""The ``README.md`` model card of an exported folder, written with ``huggingface_hub``'s ``ModelCard`` and
``ModelCardData`` (YAML metadata the Hub indexes, ``model-index`` for test metrics).

It says how to load the model, what input it takes, its architecture, and what it was measured on: the
``test_report.json`` that ``vt test`` writes beside the checkpoint (read from the checkpoint's folder or the
run folder above it; its ``metrics``, ``views`` and ``manifest`` / ``dataset`` entries are shown), else what
the checkpoint itself records (training step, best validation score, data settings).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

REPORT = "test_report.json"
_FAMILIES = {"TimeSformer": "timesformer", "UniFormerV2": "uniformerv2"}


def find_test_report(source: str | Path) -> Path | None:
    """``test_report.json`` beside a checkpoint file / in a checkpoint folder, or in the folder above
    (``runs/<name>/checkpoints/best.ckpt`` -> ``runs/<name>/test_report.json``)."""
    source = Path(source)
    base = source if source.is_dir() else source.parent
    for folder in (base, base.parent):
        if (folder / REPORT).is_file():
            return folder / REPORT
    return None


def read_report(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        log.warning("%s: not readable JSON (%s); the model card leaves it out", path, e)
        return None
    return report if isinstance(report, dict) else None


def checkpoint_facts(path: str | Path) -> dict[str, Any]:
    """What a ``vt fit`` checkpoint records about its training: step, epoch, best monitored score, data
    settings and test views. Empty for other sources."""
    from video_transformers.pretrained.common import PretrainedError, load_state_dict_file

    path = Path(path)
    if not (path.is_file() and path.suffix == ".ckpt"):
        return {}
    try:
        ckpt = load_state_dict_file(path)
    except PretrainedError:
        return {}
    facts: dict[str, Any] = {k: ckpt[k] for k in ("epoch", "global_step") if isinstance(ckpt.get(k), int)}
    for name, state in (ckpt.get("callbacks") or {}).items():
        if str(name).startswith("ModelCheckpoint") and isinstance(state, dict):
            score = state.get("best_model_score")
            if score is not None and state.get("monitor"):
                facts[f"best {state['monitor']} (validation)"] = round(float(score), 6)
    dm = ckpt.get("datamodule_hyper_parameters") or {}
    for key in ("dataset", "num_frames", "sampling_rate", "fps", "crop_size", "eval_short_side"):
        if isinstance(dm.get(key), str | int | float) and not isinstance(dm.get(key), bool):
            facts[f"data.{key}"] = dm[key]
    if dm.get("test_clips") and dm.get("test_crops"):
        facts["test views (clips x crops)"] = f"{dm['test_clips']}x{dm['test_crops']}"
    return facts


def _items(d: dict[str, Any], indent: str = "") -> list[str]:
    lines = []
    for k, v in d.items():
        if isinstance(v, dict):
            lines.append(f"{indent}- {k}:")
            lines += _items(v, indent + "  ")
        elif isinstance(v, list) and len(v) > 8:
            lines.append(f"{indent}- {k}: {len(v)} entries (see {REPORT})")
        else:
            lines.append(f"{indent}- {k}: {v}")
    return lines


def _metrics(report: dict[str, Any]) -> dict[str, float]:
    metrics = report.get("metrics")
    if not isinstance(metrics, dict):
        metrics = {k: v for k, v in report.items() if str(k).startswith("test")}
    return {str(k): float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def build_card(
    config: dict[str, Any],
    *,
    report: dict[str, Any] | None = None,
    facts: dict[str, Any] | None = None,
    hub_id: str | None = None,
    source: str | None = None,
):  # noqa: ANN201 (huggingface_hub.ModelCard)
    """The model card for an exported folder's ``config`` (see :func:`.hf_folder.build_config`)."""
    from huggingface_hub import ModelCard

    from video_transformers.version import __version__

    cls = config["architectures"][0]
    title = config.get("model_name") or cls
    lines = ["---", _card_data(config, title, report, facts).to_yaml(), "---", "", f"# {title}", ""]
    lines.append(
        f"A {cls} video classifier ({config['num_classes']} classes) exported by video-transformers {__version__}"
        + (f" from `{source}`." if source else ".")
    )
    lines += _use_section(hub_id or "<namespace>/<name>") + _input_section(config)
    lines += ["", "## Architecture", "", f"`{config['model_class']}` with (config.json `model_kwargs`):", ""]
    lines += ["| argument | value |", "|---|---|"]
    lines += [f"| {k} | {json.dumps(v)} |" for k, v in config["model_kwargs"].items()]
    lines += _evaluation_section(report, facts)
    return ModelCard("\n".join(lines) + "\n")


def _card_data(config: dict[str, Any], title: str, report: dict | None, facts: dict | None):  # noqa: ANN202
    """The YAML metadata the Hub indexes: library, task, tags and (with a test report) ``model-index``."""
    from huggingface_hub import EvalResult, ModelCardData

    cls = config["architectures"][0]
    family = _FAMILIES.get(cls, "vivit" if cls.startswith("ViViT") else cls.lower())
    metrics = _metrics(report) if report else {}
    dataset = (report or {}).get("dataset")
    dataset_name = dataset.get("name") if isinstance(dataset, dict) else dataset
    dataset_name = str(dataset_name or (facts or {}).get("data.dataset") or "unknown")
    eval_results = [
        EvalResult(
            task_type="video-classification",
            dataset_type=dataset_name,
            dataset_name=dataset_name,
            dataset_split="test",
            metric_type="accuracy" if "acc" in name else name,
            metric_name=name,
            metric_value=value,
        )
        for name, value in metrics.items()
    ]
    return ModelCardData(
        library_name="video-transformers",
        pipeline_tag="video-classification",
        tags=["video-classification", family, "video-transformers"],
        model_name=title if eval_results else None,
        eval_results=eval_results or None,
    )


def _use_section(repo: str) -> list[str]:
    return [
        "",
        "## Use",
        "",
        "```python",
        "import video_transformers",
        "",
        f'model = video_transformers.from_pretrained("hf-hub:{repo}")  # eval mode, class names attached',
        "logits = model(video)  # (B, 3, T, H, W), normalised as below",
        "```",
        "",
        f"or `vt predict --ckpt_path hf-hub:{repo} --paths clip.mp4`.",
    ]


def _input_section(config: dict[str, Any]) -> list[str]:
    clip = config.get("clip") or {}
    names = [config["id2label"][str(i)] for i in range(len(config.get("id2label") or {}))]
    lines = [
        "",
        "## Input",
        "",
        f"- {config['num_frames']} frames of {config['image_size']}x{config['image_size']} px, "
        f"{config['num_channels']} channels, layout (B, C, T, H, W)",
        f"- normalisation: (x / 255 - mean) / std, mean {config['image_mean']}, std {config['image_std']}",
    ]
    if clip:
        lines.append(
            f"- clips: one frame every {clip.get('sampling_rate')} at {clip.get('fps')} fps, short side resized to "
            f"{clip.get('short_side')} px, {clip.get('crop_size')} px crops"
        )
    if names:
        shown = ", ".join(names[:10]) + (f", ... ({len(names)} in config.json id2label)" if len(names) > 10 else "")
        lines.append(f"- classes: {shown}")
    return lines


def _evaluation_section(report: dict[str, Any] | None, facts: dict[str, Any] | None) -> list[str]:
    lines = ["", "## Evaluation", ""]
    if report:
        metrics = _metrics(report)
        lines.append(f"From `{REPORT}` (copied into this folder):")
        lines.append("")
        if metrics:
            lines += ["| metric | value |", "|---|---|", *[f"| {k} | {v:.6g} |" for k, v in metrics.items()], ""]
        for key in ("views", "manifest", "dataset"):
            if key in report:
                value = report[key]
                lines += [f"- {key}:", *_items(value, "  ")] if isinstance(value, dict) else [f"- {key}: {value}"]
    else:
        lines.append(f"No `{REPORT}` was found beside the checkpoint: this model has no recorded test evaluation.")
        if facts:
            lines += ["", "What the checkpoint records:", "", *_items(facts)]
    return lines


__all__ = ["build_card", "checkpoint_facts", "find_test_report", "read_report"]
