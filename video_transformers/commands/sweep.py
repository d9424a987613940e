"""``vt sweep``: run a W&B sweep definition locally, without a W&B server (grid and random search).

    vt sweep configs/sweeps/attention_schemes.yaml [--max-runs N] [--override trainer.max_epochs=2 ...]
             [--output runs/sweeps/NAME] [--seed 0] [--parallel N] [--resume] [--markdown FILE] [--dry-run]

Each run is the sweep's ``command`` with the agent's macros expanded (the same process ``wandb agent`` would
start), plus ``--override`` values and a per-run name (``--run.root <output> --run.name <NN_values>``: the run's
folder is ``<output>/<NN_values>/version_0``); then ``vt test`` on the run's best checkpoint. Runs log like
any other ``vt fit`` (W&B offline without credentials, or whatever logger the config or an override names).
``--override config=configs/profiles/cpu_smoke.yaml`` layers a config on every run. The sweep ends with a
comparison table, ``results.csv`` / ``results.md`` / ``results.png`` in the output folder: test top-1, top-1 and
direction accuracy on the time-reversed class pairs, parameters and GFLOPs per view, training clips/s and peak
memory. The table is rewritten as each run ends (runs still to come marked ``pending``), and a progress line
says how many runs are done, the time spent and the time left at the rate so far.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from video_transformers.sweeps import SweepError, expand_command, format_value, load_sweep, runs

COLUMNS = [
    ("test_acc1", "test top-1 (%)", 100.0),
    ("pair_acc1", "top-1 on reversed pairs (%)", 100.0),
    ("direction_acc", "pair direction (%)", 100.0),
    ("params_m", "params (M)", 1.0),
    ("gflops", "GFLOPs/view", 1.0),
    ("clips_per_s", "train clips/s", 1.0),
    ("peak_mem_mb", "peak mem (MB)", 1.0),
    ("fit_s", "fit time (s)", 1.0),
]


def run_label(index: int, params: dict[str, Any]) -> str:
    """A run's folder name in the sweep's output, ``NN_values``; the pending rows of the table use it too."""
    return f"{index:02d}_{_label(params)}"


def _label(params: dict[str, Any]) -> str:
    parts = []
    for v in params.values():
        text = Path(v).stem if isinstance(v, str) and v.endswith((".yaml", ".yml")) else format_value(v)
        parts.append(re.sub(r"[^A-Za-z0-9_.=-]+", "_", text.rsplit("/", 1)[-1]))
    return "-".join(parts)[:120]


def _parse_override(text: str) -> str:
    if "=" not in text or text.startswith("-"):
        raise SweepError(f"--override {text!r}: expected KEY=VALUE, e.g. trainer.max_epochs=2")
    return f"--{text}"


def _check_configs(argv: list[str]) -> None:
    for i, arg in enumerate(argv):
        path = arg.split("=", 1)[1] if arg.startswith("--config=") else argv[i + 1] if arg == "--config" else None
        if path is not None and not Path(path).is_file():
            raise SweepError(f"{path}: config named by the sweep command not found (run vt sweep from the repo root)")


def _newest(root: Path, name: str) -> Path | None:
    found = sorted(root.rglob(name), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def _model_cost(ckpt: Path) -> dict[str, float]:
    """Parameters (M) and GFLOPs per view of the checkpoint's model, counted on the meta device."""
    try:
        import torch

        from video_transformers.safety.checkpoints import safe_torch_load
        from video_transformers.utils.profile import build_model, count_flops, count_params, video_input_shape
    except ImportError:
        return {}
    h = safe_torch_load(ckpt)["hyper_parameters"]
    sizes = {k: h[k] for k in ("num_frames", "img_size") if h.get(k) is not None}
    model = build_model(h["backbone"], num_classes=h["num_classes"], **{**sizes, **(h.get("backbone_kwargs") or {})})
    x = torch.empty(video_input_shape(model), device="meta")
    return {"params_m": count_params(model) / 1e6, "gflops": count_flops(model, x).gflops}


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Runs done of the plan, elapsed time and ETA (elapsed per finished run x runs left: with ``--parallel N``
    the rate so far already counts the runs that went side by side); ``results.*`` rewritten at each end."""

    def __init__(self, plan: list[dict], params: list[str], out: Path, name: str, method: str) -> None:
        self.rows: list[dict[str, Any]] = [
            {"run": run_label(i, p), **p, "status": "pending"} for i, p in enumerate(plan)
        ]
        self.params, self.out, self.name, self.method = params, out, name, method
        self.done, self.start, self.lock = 0, time.monotonic(), threading.Lock()

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        left = len(self.rows) - self.done
        eta = _duration(elapsed / self.done * left) if self.done else "?"
        return f"sweep {self.name}: {self.done}/{len(self.rows)} runs done, elapsed {_duration(elapsed)}, ETA {eta}"

    def title(self) -> str:
        total = len(self.rows)
        done = f"{total} runs" if self.done == total else f"{self.done} of {total} runs done"
        return f"{self.name}: {done} ({self.method})"

    def finished(self, index: int, row: dict[str, Any]) -> str:
        with self.lock:  # runs end in any order: one writer at a time, rows kept in plan order
            self.rows[index] = row
            self.done += 1
            write_table(self.rows, self.params, self.out, self.title())
            return self.line()


def _run(argv: list[str], log_path: Path, env: dict[str, str]) -> tuple[int, float]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log_path, "w") as log:
        log.write(" ".join(argv) + "\n\n")
        log.flush()
        rc = subprocess.call(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    return rc, time.perf_counter() - start


def run_one(
    config: dict, params: dict, index: int, out: Path, overrides: list[str], resume: bool = False
) -> dict[str, Any]:
    """Fit, then test the best checkpoint; the row is also saved as ``row.json`` in the run's folder. With
    ``resume``, a run whose row says ok is read back, and a finished fit (``fit.json``) is only tested."""
    name = config.get("name", "sweep")
    label = run_label(index, params)
    run_dir = out / label
    fit = expand_command(config, params) + overrides
    if "fit" not in fit:
        raise SweepError(f"sweep {name}: the command must run `vt fit` (no 'fit' in {fit})")
    _check_configs(fit)
    saved = _read_json(run_dir / "row.json") if resume else None
    if saved is not None and saved.get("status") == "ok":
        return saved
    per_run = [f"--run.root={out}", f"--run.name={label}"]  # vt names the logger's run after it
    env = dict(os.environ, WANDB_RUN_GROUP=name, WANDB_SILENT="true")
    row: dict[str, Any] = {"run": label, **params}
    done = _read_json(run_dir / "fit.json") if resume else None
    if done is not None:
        row["fit_s"], ckpt = done["fit_s"], Path(done["checkpoint"])
    else:
        rc, row["fit_s"] = _run(fit + per_run, run_dir / "fit.log", env)
        ckpt = _newest(run_dir, "best.ckpt") or _newest(run_dir, "last.ckpt")
        if rc != 0 or ckpt is None:
            why = f"exit {rc}" if rc != 0 else f"exit 0 but no checkpoint under {run_dir}"
            row["status"] = f"fit failed ({why}; see {run_dir / 'fit.log'})"
            return _save_row(run_dir, row)
        (run_dir / "fit.json").write_text(json.dumps({"fit_s": row["fit_s"], "checkpoint": str(ckpt)}))
    i = fit.index("fit")
    test = fit[:i] + ["test"] + fit[i + 1 :] + per_run + [f"--ckpt_path={ckpt}"]  # logs beside the checkpoint
    rc, _ = _run(test, run_dir / "test.log", dict(env, WANDB_JOB_TYPE="test"))
    summary = ckpt.parent / "test_summary.json"
    if rc != 0 or not summary.is_file():
        row["status"] = f"test failed (exit {rc}; see {run_dir / 'test.log'})"
        return _save_row(run_dir, row)
    test_summary = json.loads(summary.read_text())
    row |= {"test_acc1": test_summary["acc1"], "videos": test_summary["videos"]}
    row |= {k: test_summary[k] for k in ("pair_acc1", "direction_acc") if k in test_summary}
    train = ckpt.parent / "train_summary.json"
    if train.is_file():
        row |= {k: v for k, v in json.loads(train.read_text()).items() if k in ("clips_per_s", "peak_mem_mb")}
    row |= _model_cost(ckpt)
    row |= {"status": "ok", "checkpoint": str(ckpt)}
    return _save_row(run_dir, row)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _save_row(run_dir: Path, row: dict[str, Any]) -> dict[str, Any]:
    (run_dir / "row.json").write_text(json.dumps(row, indent=1))
    return row


def _fmt(value: Any, scale: float) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        v = value * scale
        return f"{v:.1f}" if scale != 1.0 or abs(v) >= 10 else f"{v:.3g}"
    return str(value)


def write_table(rows: list[dict], params: list[str], out: Path, title: str) -> str:
    """Write ``results.csv``, ``results.md`` and ``results.png``; return the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    keys = ["run", *params, *[k for k, _, _ in COLUMNS], "videos", "status", "checkpoint"]
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    head = [p.rsplit(".", 1)[-1] for p in params] + [h for _, h, _ in COLUMNS]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [_fmt(r.get(p), 1.0) for p in params] + [_fmt(r.get(k), s) for k, _, s in COLUMNS]
        if r.get("status") != "ok":
            cells[-1] += f" ({r.get('status')})"
        lines.append("| " + " | ".join(cells) + " |")
    md = "\n".join(lines) + "\n"
    (out / "results.md").write_text(md)
    _plot(rows, out / "results.png", title)
    return md


def _plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.get("status") == "ok"]
    if not ok:
        return
    names = [re.sub(r"^\d+_", "", r["run"]).replace("timesformer_base_", "").replace("_8x224", "") for r in ok]
    series = [("test_acc1", "test top-1"), ("pair_acc1", "top-1, reversed pairs"), ("direction_acc", "direction")]
    series = [(k, n) for k, n in series if any(k in r for r in ok)]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(ok) + 2) + 1.8, 3.8))
    width = 0.8 / len(series)
    for j, (key, label) in enumerate(series):
        xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(ok))]
        bars = ax.bar(xs, [100 * r.get(key, float("nan")) for r in ok], width, label=label)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.axhline(50, color="grey", ls="--", lw=0.8, label="direction chance")
    ax.set_xticks(range(len(ok)), names, rotation=15, fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never over a bar
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vt sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", help="W&B sweep YAML (method grid or random)")
    parser.add_argument("--max-runs", type=int, default=None, help="stop after N runs (grid: the first N)")
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra vt argument for every run, e.g. trainer.max_epochs=2 (repeatable)",
    )
    parser.add_argument("--output", default=None, help="output folder (default runs/sweeps/<sweep name>)")
    parser.add_argument("--seed", type=int, default=0, help="seed of random search")
    parser.add_argument("--markdown", default=None, help="also write the Markdown table to this file")
    parser.add_argument(
        "--parallel",
        type=int,
        default=1,
        help="runs at once (each gets OMP_NUM_THREADS = cores / N unless set): tiny models use cores better so",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the runs of an earlier call with the same --output that ended ok; only test finished fits",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the commands and stop")
    return parser


def _plan(args: argparse.Namespace) -> tuple[dict[str, Any], list[str], list[dict[str, Any]]]:
    """The sweep definition, the ``--override`` arguments and the parameter sets to run; SweepError if invalid."""
    config = load_sweep(args.sweep)
    if args.max_runs is not None and args.max_runs < 1:
        raise SweepError(f"--max-runs must be >= 1; got {args.max_runs}")
    if args.parallel < 1:
        raise SweepError(f"--parallel must be >= 1; got {args.parallel}")
    overrides = [_parse_override(o) for o in args.override]
    return config, overrides, runs(config, max_runs=args.max_runs, seed=args.seed)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config, overrides, plan = _plan(args)
    except SweepError as e:
        print(f"vt sweep: {e}", file=sys.stderr)
        return 2
    name = config.get("name", Path(args.sweep).stem)
    out = Path(args.output or Path("runs/sweeps") / name)
    if args.dry_run:
        for i, params in enumerate(plan):
            print(" ".join(expand_command(config, params) + overrides), f"# run {i}")
        return 0
    if args.parallel > 1 and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.parallel))
    progress = Progress(plan, list(config["parameters"]), out, name, config["method"])

    def one(i: int, params: dict) -> dict[str, Any]:
        print(f"[{i + 1}/{len(plan)}] {name}: {params}", flush=True)
        row = run_one(config, params, i, out, overrides, resume=args.resume)
        shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items() if k != "checkpoint"}
        print(f"    [{i + 1}/{len(plan)}] -> {shown}", flush=True)
        print(progress.finished(i, row), f"(table: {out / 'results.md'})", flush=True)
        return row

    try:
        with ThreadPoolExecutor(max_workers=args.parallel) as pool:  # threads only wait on vt subprocesses
            rows = list(pool.map(one, range(len(plan)), plan))  # in plan order, whatever finishes first
    except SweepError as e:
        print(f"vt sweep: {e}", file=sys.stderr)
        return 2
    md = write_table(rows, list(config["parameters"]), out, progress.title())
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(md)
    print(md)
    print(f"results: {out / 'results.csv'}, {out / 'results.md'}, {out / 'results.png'}")
    return 0 if all(r.get("status") == "ok" for r in rows) else 1
