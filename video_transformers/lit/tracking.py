"""Experiment tracking: the W&B logger ``vt`` runs log to, and the config every logger receives.

* :class:`WandbLogger`: Lightning's W&B logger that goes offline by itself when no API key is configured
  and says at the end which folder ``wandb sync`` uploads.
* :class:`LogConfig`: LightningCLI's config saver that also sends the whole resolved config to every logger.
"""

from __future__ import annotations

import json
import netrc
import os
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only


def wandb_has_credentials() -> bool:
    """``WANDB_API_KEY`` is set or ``~/.netrc`` (``$NETRC``) has an entry for the W&B host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


class WandbLogger(_LightningWandbLogger):
    """Lightning's ``WandbLogger`` with ``offline=None`` meaning: offline unless W&B credentials exist
    (or ``WANDB_MODE`` says otherwise). At the end it logs the run folder to ``wandb sync``. ``vt`` sets
    ``save_dir`` (the run folder), ``name`` and ``tags`` when the config leaves them ``None``."""

    def __init__(
        self,
        *,
        offline: bool | None = None,
        project: str = "video-transformers",
        save_dir: str | None = None,
        dir: str | None = None,  # noqa: A002 (wandb's name)
        **kwargs: Any,
    ) -> None:
        if offline is None:
            mode = os.environ.get("WANDB_MODE")
            offline = mode in ("offline", "dryrun") if mode else not wandb_has_credentials()
        if offline:
            os.environ.setdefault("WANDB_MODE", "offline")
        # wandb-core is one service per process and resolves relative folders against ITS working directory
        # (the first run's): a later run started from another directory would write its files nowhere.
        save_dir = str(Path(save_dir or ".").resolve())
        dir = None if dir is None else str(Path(dir).resolve())
        super().__init__(offline=offline, project=project, save_dir=save_dir, dir=dir, **kwargs)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        super().finalize(status)
        run = self._experiment
        if run is None or not getattr(run, "dir", None):
            return
        folder = Path(run.dir).parent.resolve()  # .../wandb/offline-run-<time>-<id>/files -> the run folder
        # Finish the run so its folder is complete before we point at it; a later use of this logger (vt test
        # after fit in one process) starts the run again with the same id (resume="allow").
        run.finish()
        self._experiment = None
        if self._offline:
            rank_zero_info(f"W&B offline run saved to {folder}; upload it with: wandb sync {folder}")


class LogConfig(SaveConfigCallback):
    """Save ``config.yaml`` as LightningCLI does, and log the full resolved config to every logger."""

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        config = self.parser.dump(self.config, skip_none=False, format="json")
        flat = _flatten(json.loads(config))
        for logger in trainer.loggers:
            if isinstance(logger, _LightningWandbLogger):
                logger.experiment.config.update({"config": json.loads(config)}, allow_val_change=True)
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_text("config", "```yaml\n" + self.parser.dump(self.config) + "\n```")
            else:
                logger.log_hyperparams({f"config/{k}": v for k, v in flat.items()})


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= _flatten(v, key + ".")
        else:
            out[key] = json.dumps(v) if isinstance(v, list) else v
    return out
