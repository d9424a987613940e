"""Run folders: every ``vt fit`` gets its own, so re-running a config never overwrites an earlier run.

Layout (as TensorBoard's ``version_N``)::

    <root>/<name>/version_<N>/       root "runs", name: the first --config file's name (--run.name, --run.root)
        config.yaml                  the resolved config (test_config.yaml etc. for evaluations of this run)
        checkpoints/best.ckpt        best by the monitored metric (val/acc1)
        checkpoints/last.ckpt        the latest state: every epoch end, SIGUSR1, SIGTERM / SIGINT
        checkpoints/*_summary.json   reports (val_*, train_*, test_* next to the tested checkpoint)
        wandb/ ...                   the logger's files

``--ckpt_path last`` / ``best`` name the newest such file among the runs of ``<root>/<name>``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import lightning as L

VERSION = re.compile(r"^version_(\d+)$")
ENV = "VT_RUN_DIR"  # the folder rank 0 chose, for the ranks Lightning's DDP launcher starts after it
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")
_JOB_VARIABLES = ("SLURM_JOB_ID", "TORCHELASTIC_RUN_ID")


def default_name(argv: list[str] | None) -> str:
    """The run name a command line implies: the stem of its first ``--config`` file, else ``vt``."""
    argv = list(argv or [])
    for i, arg in enumerate(argv):
        if arg in ("-c", "--config") and i + 1 < len(argv):
            return Path(argv[i + 1]).stem
        if arg.startswith("--config="):
            return Path(arg.split("=", 1)[1]).stem
    return "vt"


def run_folders(root: str | Path, name: str) -> list[Path]:
    """The run folders of ``<root>/<name>`` (every sub-folder that holds a ``checkpoints`` folder or is a
    ``version_N``)."""
    base = Path(root) / name
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if p.is_dir() and (VERSION.match(p.name) or (p / "checkpoints").is_dir()))


def newest_checkpoint(root: str | Path, name: str, filename: str, *, run_dir: str | Path | None = None) -> Path | None:
    """The most recently written ``checkpoints/<filename>`` of the runs of ``<root>/<name>`` (or of ``run_dir``)."""
    folders = [Path(run_dir)] if run_dir is not None else run_folders(root, name)
    found = [f / "checkpoints" / filename for f in folders if (f / "checkpoints" / filename).is_file()]
    return max(found, key=lambda p: p.stat().st_mtime_ns).resolve() if found else None


def run_of_checkpoint(ckpt: str | Path) -> Path | None:
    """The run folder a checkpoint was written in (``<run>/checkpoints/x.ckpt`` next to ``<run>/config.yaml``)."""
    ckpt = Path(ckpt).resolve()
    run = ckpt.parent.parent
    return run if ckpt.parent.name == "checkpoints" and (run / "config.yaml").is_file() else None


def _rank_from_env() -> int:
    for var in _RANK_VARIABLES:
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def _multi_process_launch() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 or int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1


def new_run_dir(root: str | Path, name: str) -> Path:
    """A new run folder ``<root>/<name>/version_<N>`` (N one past the highest), created atomically.

    Every rank of a multi-process run must use one folder: ranks that Lightning's DDP launcher starts read
    rank 0's choice from ``$VT_RUN_DIR``; ranks that SLURM or torchrun start together all derive
    ``job_<id>`` from ``SLURM_JOB_ID`` / ``TORCHELASTIC_RUN_ID`` (a requeued SLURM job keeps its folder).
    """
    if _rank_from_env() != 0 and os.environ.get(ENV):
        return Path(os.environ[ENV])
    base = (Path(root) / name).resolve()
    if _multi_process_launch():
        job = next((os.environ[v] for v in _JOB_VARIABLES if os.environ.get(v, "none") != "none"), None)
        if job is None:
            raise ValueError(
                "the ranks of this run were started separately and share no job id (SLURM_JOB_ID,"
                " TORCHELASTIC_RUN_ID): give every rank the same --run.dir"
            )
        run = base / f"job_{job}"
        run.mkdir(parents=True, exist_ok=True)
        return run
    base.mkdir(parents=True, exist_ok=True)
    n = 1 + max((int(m[1]) for p in base.iterdir() if (m := VERSION.match(p.name))), default=-1)
    while True:
        run = base / f"version_{n}"
        try:
            run.mkdir()
            break
        except FileExistsError:  # another run of this name started at the same time
            n += 1
    os.environ[ENV] = str(run)
    return run


def output_dir(trainer: L.Trainer, stage: str) -> Path:
    """Where a run's report files go: next to the tested checkpoint, else the checkpoint folder."""
    if stage == "test" and trainer.ckpt_path:
        return Path(trainer.ckpt_path).parent
    cb = trainer.checkpoint_callback
    if cb is not None and getattr(cb, "dirpath", None):
        return Path(cb.dirpath)
    return Path(trainer.default_root_dir) / "checkpoints"
