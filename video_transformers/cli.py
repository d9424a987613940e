"""The ``vt`` command: a LightningCLI (``fit``, ``validate``, ``test``, ``predict``) over :class:`VideoClassifier`
and :class:`VideoDataModule`, plus the commands of ``video_transformers.commands`` (``vt --help`` lists them).

What every run gets, whatever its config (the configs state only their differences):

* a run folder of its own, ``runs/<name>/version_<N>`` (``lit/runs.py``; ``--run.name``, ``--run.root``,
  ``--run.dir``), named after the first ``--config`` file; ``--ckpt_path last`` / ``best`` find the newest
  such checkpoint of that name;
* the W&B logger (offline without credentials), ``best.ckpt`` by ``val/acc1`` and ``last.ckpt`` at every epoch
  end and on SIGTERM / SIGINT / SIGUSR1, the lr monitor, the training monitor, the evaluation report and the
  RNG state in checkpoints;
* sizes stated once, in ``data``: the class count and names, frames and crop size are linked into ``model``.

A config file may start from others: ``base: [file, ...]`` (paths relative to it) are applied first.
Keys are checked: a mistyped or abbreviated key is an error naming it and the closest valid key.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
import os
import sys
from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

from video_transformers.cli_parser import ConfigFile, VideoTransformersParser
from video_transformers.data import VideoDataModule
from video_transformers.data.datamodule import SkippedVideoReport
from video_transformers.data.errors import data_errors_for_users
from video_transformers.lit import VideoClassifier
from video_transformers.lit.checkpoint_io import CLI_TRUST_HINT, AtomicCheckpointIO
from video_transformers.lit.interrupt import GracefulInterrupt, TrainingInterrupted
from video_transformers.lit.monitor import TrainingMonitor
from video_transformers.lit.report import EvaluationReport
from video_transformers.lit.resume import ResumeState
from video_transformers.lit.runs import default_name, new_run_dir, newest_checkpoint, run_of_checkpoint
from video_transformers.lit.test_report import TestReport
from video_transformers.lit.tracking import LogConfig, WandbLogger
from video_transformers.safety.checkpoints import safe_torch_load
from video_transformers.safety.metadata import validate_hparams

log = logging.getLogger(__name__)

# Callbacks every run gets (LightningCLI "forced callbacks", configurable as --<key>.<argument>).
FORCED_CALLBACKS = {
    "monitor": TrainingMonitor,
    "report": EvaluationReport,
    "resume_state": ResumeState,
    "test_report": TestReport,  # test_report.json beside test_predictions.csv
    "skipped_videos": SkippedVideoReport,  # videos replaced at run time (data.on_bad_video: skip), per epoch
    "checkpoint": ModelCheckpoint,  # best.ckpt
    "last_checkpoint": ModelCheckpoint,  # last.ckpt at every epoch end, whatever the monitored metric does
}
DEFAULTS = {
    "checkpoint.filename": "best",
    "checkpoint.monitor": "val/acc1",
    "checkpoint.mode": "max",
    "checkpoint.enable_version_counter": False,
    "last_checkpoint.filename": "last",
    "last_checkpoint.monitor": None,
    "last_checkpoint.save_top_k": 1,
    "last_checkpoint.enable_version_counter": False,
    "trainer.logger": {"class_path": f"{WandbLogger.__module__}.WandbLogger", "init_args": {}},
    "trainer.callbacks": [
        {"class_path": "lightning.pytorch.callbacks.LearningRateMonitor", "init_args": {"logging_interval": "step"}}
    ],
}
EVALUATE = ("validate", "test", "predict")


# -- the CLI ----------------------------------------------------------------------------------------------
class VideoTransformersCLI(LightningCLI):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("parser_class", VideoTransformersParser)
        kwargs.setdefault("seed_everything_default", 0)
        super().__init__(*args, **kwargs)

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        parser = self.parser_class(**kwargs)
        parser.add_argument("-c", "--config", action=ConfigFile, help="a config file (YAML); repeat to layer them")
        parser.add_argument(
            "--base", type=str | list[str] | None, default=None, help="configs a config file builds on (in the file)"
        )
        return parser

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for key, callback in FORCED_CALLBACKS.items():
            parser.add_lightning_class_args(callback, key)
        parser.set_defaults(DEFAULTS)
        parser.link_arguments("data.num_frames", "model.num_frames")
        parser.link_arguments("data.crop_size", "model.img_size")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
        parser.add_argument("--run.name", type=str | None, default=None, help="run name (default: the first config's)")
        parser.add_argument("--run.root", type=str, default="runs", help="runs go to <root>/<name>/version_<N>")
        parser.add_argument("--run.dir", type=str | None, default=None, help="this run's folder, instead of the above")
        parser.add_argument(
            "--trust_checkpoint",
            type=bool,
            default=False,
            help="Allow full unpickling of --ckpt_path (it can run code stored in the file): only for trusted files",
        )
        parser.add_argument(
            "--allow_random_weights",
            type=bool,
            default=False,
            help="validate / test / predict without --ckpt_path, model.init_from or model.pretrained",
        )

    # -- after parsing: checkpoints and run folders (public hooks only) -----------------------------------
    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        self.argv = list(args) if isinstance(args, (list, tuple)) else sys.argv[1:]  # for names and resume
        super().parse_arguments(parser, args)
        self._ckpt_path = None
        if self.config.get("subcommand"):
            self._prepare_checkpoint(self.config.subcommand)

    def _fail(self, message: str) -> None:
        """A one-line error about the configuration, as the parser's own errors are."""
        sub = self.config.get("subcommand")
        sys.stderr.write(f"vt {sub}: error: {message}\n" if sub else f"vt: error: {message}\n")
        sys.exit(2)

    def _prepare_checkpoint(self, sub: str) -> None:
        """Resolve ``--ckpt_path last/best``, merge the checkpoint's hyper-parameters into the model config
        (read weights-only and validated first), and check that there are weights to evaluate.

        Lightning would merge the hyper-parameters itself; the path is held back from it until
        :meth:`before_instantiate_classes` so that the file is read once, safely, here."""
        cfg = self.config[sub]
        name, root = cfg.run.name or default_name(self.argv), cfg.run.root
        ckpt = cfg.get("ckpt_path")
        if ckpt in ("last", "best"):
            chosen = cfg.run.dir or cfg.trainer.default_root_dir
            found = newest_checkpoint(root, name, f"{ckpt}.ckpt", run_dir=chosen)
            where = chosen or f"{Path(root) / name}/*"
            if found is not None:
                rank_zero_info(f"--ckpt_path {ckpt}: {found}")
            elif sub == "fit" and ckpt == "last":
                rank_zero_info(f"--ckpt_path last: no last.ckpt under {where} yet, starting from scratch")
            else:
                self._fail(f"--ckpt_path {ckpt}: no {ckpt}.ckpt under {where}/checkpoints")
            ckpt = None if found is None else str(found)
        self._ckpt_arg, self._ckpt_path, cfg.ckpt_path = cfg.ckpt_path, ckpt, None
        if ckpt and Path(ckpt).is_file():
            self._merge_hparams(sub, ckpt, trust=bool(cfg.get("trust_checkpoint")))
        model = self.config[sub].model
        if sub in EVALUATE and not (ckpt or model.init_from or model.pretrained or cfg.allow_random_weights):
            self._fail(
                f"no weights to {sub}: give --ckpt_path FILE (or best / last: the newest of the runs named {name!r}),"
                " --model.init_from or --model.pretrained; --allow_random_weights true evaluates an untrained model"
            )

    def _merge_hparams(self, sub: str, ckpt: str, *, trust: bool) -> None:
        saved = safe_torch_load(ckpt, trust=trust, hint=CLI_TRUST_HINT).get("hyper_parameters", {})
        hparams = dict(validate_hparams(saved, where=ckpt))
        hparams.pop("_instantiator", None)
        hparams.pop("_class_path", None)
        accepted = inspect.signature(self.model_class).parameters
        dropped = sorted(k for k in hparams if k not in accepted)
        if dropped:
            log.info("%s: hyper-parameters this version does not take, ignored: %s", ckpt, dropped)
        hparams = {k: v for k, v in hparams.items() if k in accepted}
        ours, theirs = self.config[sub].model.backbone, hparams.get("backbone")
        if theirs and ours != theirs and not hparams.get("init_from"):
            if ours != accepted["backbone"].default:
                self._fail(
                    f"{ckpt} holds a {theirs} model, but the config asks for {ours} (model.backbone). Evaluate or"
                    f" resume it with its own config (or none); to train {ours} from it, use --model.init_from"
                )
            rank_zero_info(f"{ckpt}: a {theirs} model (the checkpoint's architecture)")
        if hparams:
            self.config = self.parser.parse_object({sub: {"model": hparams}}, self.config)

    def before_instantiate_classes(self) -> None:
        """Point the trainer, checkpoints and logger at the run folder. These values are put back after the
        classes are built: the saved config.yaml names the run but no folder, so running it again is a new run."""
        if self.subcommand is None:
            return
        cfg = self.config[self.subcommand]
        self._restore: dict[str, Any] = {}

        def put(key: str, value: Any) -> None:
            self._restore.setdefault(key, cfg[key])
            cfg[key] = value

        self._restore["ckpt_path"], cfg.ckpt_path = self._ckpt_arg, self._ckpt_path  # saved as given (last, ...)
        run = self._run_dir(self.subcommand, cfg)
        cfg.run.name = name = cfg.run.name or default_name(self.argv)
        if cfg.trainer.default_root_dir is None:
            put("trainer.default_root_dir", str(run))
        for key in ("checkpoint.dirpath", "last_checkpoint.dirpath"):
            if cfg[key] is None:
                put(key, str(run / "checkpoints"))
        if cfg.trainer.logger is False and cfg.trainer.callbacks:  # nothing to log the learning rate to
            monitor = "lightning.pytorch.callbacks.LearningRateMonitor"
            put("trainer.callbacks", [c for c in cfg.trainer.callbacks if c.get("class_path") != monitor] or None)
        logger = cfg.trainer.logger  # one logger (a list is left as configured)
        if isinstance(logger, Namespace) and isinstance(logger.get("init_args"), Namespace):
            if "save_dir" in logger.init_args and logger.init_args.save_dir is None:
                put("trainer.logger.init_args.save_dir", str(run))
            if logger.class_path == f"{WandbLogger.__module__}.WandbLogger":
                suffix = "" if self.subcommand == "fit" else f"-{self.subcommand}"
                if not logger.init_args.get("name"):
                    put("trainer.logger.init_args.name", f"{name}/{run.name}{suffix}")
                if not logger.init_args.get("tags"):
                    put("trainer.logger.init_args.tags", [cfg.model.backbone, cfg.data.dataset])
        prefix = "" if self.subcommand == "fit" else f"{self.subcommand}_"  # an evaluation beside its run
        self.save_config_kwargs["config_filename"] = f"{prefix}config.yaml"
        rank_zero_info(f"vt {self.subcommand}: run folder {run}")

    def after_instantiate_classes(self) -> None:
        for key, value in getattr(self, "_restore", {}).items():
            self.config[self.subcommand][key] = value
        data, model = getattr(self, "datamodule", None), getattr(self, "model", None)
        if isinstance(data, VideoDataModule) and hasattr(model, "input_normalisation"):
            data.set_normalisation(*model.input_normalisation)  # what the weights expect, unless data.mean/std

    def _run_dir(self, sub: str, cfg: Namespace) -> Path:
        """``--run.dir`` (or ``--trainer.default_root_dir``); else the run a checkpoint comes from (resume in place,
        evaluate beside it); else a new one."""
        ckpt = self._ckpt_path
        chosen = cfg.run.dir or cfg.trainer.default_root_dir
        if chosen:
            run = Path(chosen).resolve()
            if sub == "fit" and not ckpt and any((run / "checkpoints").glob("*.ckpt")):
                self._fail(
                    f"{run} holds the checkpoints of another run: resume it (--ckpt_path last) or choose"
                    " another folder (--run.dir)"
                )
            run.mkdir(parents=True, exist_ok=True)
            return run
        source = run_of_checkpoint(ckpt) if ckpt and Path(ckpt).is_file() else None
        return source or new_run_dir(cfg.run.root, cfg.run.name or default_name(self.argv))

    def instantiate_trainer(self, **kwargs: Any):  # noqa: ANN201 (LightningCLI signature)
        config, config_init = (c[self.subcommand] if self.subcommand else c for c in (self.config, self.config_init))
        trainer_config = config_init.get("trainer") or {}
        plugins = kwargs.get("plugins", trainer_config.get("plugins"))
        plugins = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO(trust=bool(config.get("trust_checkpoint", False))))
        kwargs["plugins"] = plugins
        if self.subcommand == "fit":
            callbacks = kwargs.get("callbacks", trainer_config.get("callbacks"))
            callbacks = [] if callbacks is None else list(callbacks) if isinstance(callbacks, list) else [callbacks]
            if not any(isinstance(c, GracefulInterrupt) for c in callbacks):
                callbacks.append(GracefulInterrupt(argv=getattr(self, "argv", None)))
            kwargs["callbacks"] = callbacks
        return super().instantiate_trainer(**kwargs)


def run_cli(args: list[str] | None = None) -> VideoTransformersCLI:
    """Run ``vt`` in-process and return the CLI object (tests use it to reach the trainer)."""
    os.environ.setdefault("WANDB_SILENT", "true")
    return VideoTransformersCLI(
        VideoClassifier,
        VideoDataModule,
        args=args,
        save_config_callback=LogConfig,  # config.yaml in the run folder, and the resolved config in the logger
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "vt"},
    )


class _ConfigReader(VideoTransformersCLI):
    def instantiate_classes(self) -> None:
        """Parse only."""


def read_config(args: list[str]) -> Namespace:
    """The configuration ``vt fit`` would run with ``args`` (``--config`` files and ``--key value``), read by the
    same parser (bases, links, defaults, key checks); nothing is built. ``vt info`` and ``vt data`` use it."""
    return _ConfigReader(VideoClassifier, VideoDataModule, args=args, run=False, parser_kwargs={"prog": "vt"}).config


# -- the command ``vt`` --------------------------------------------------------------------------------------
# Every command, one line each (``vt --help``). The Trainer's run through LightningCLI; the others are
# ``<module>.main(argv) -> int``.
COMMANDS = {
    "fit": "train a model: vt fit --config configs/vivit_factorised.yaml",
    "validate": "one validation pass over a checkpoint",
    "test": "multi-view, per-video evaluation of a checkpoint: vt test --config C --ckpt_path best",
    "predict": "class scores for video files (--paths), or the Trainer's predict loop (--config)",
    "info": "parameters, GFLOPs per view and attention layout of models or of a config",
    "data": "check a dataset (missing, unreadable, too-short videos) or resize its videos",
    "sweep": "run a W&B sweep file locally, then compare the runs in a table",
    "explain": "attention rollout of a checkpoint on a video, as images",
    "export": "a checkpoint to ONNX, TorchScript or torch.export, checked against the eager model",
    "features": "embeddings of videos per view or pooled, in resumable shards (Lightning's predict loop)",
    "compare": "two test reports side by side, every differing field flagged",
}
EXTRA_COMMANDS = {
    "info": "video_transformers.commands.info",
    "data": "video_transformers.commands.data",
    "sweep": "video_transformers.commands.sweep",
    "predict": "video_transformers.commands.predict",  # with --config: the Trainer's predict loop
    "explain": "video_transformers.commands.explain",
    "export": "video_transformers.commands.export",
    "features": "video_transformers.commands.features",
    "compare": "video_transformers.commands.compare",
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
    return (
        "usage: vt <command> [options]\n\nTrain, evaluate and compare video transformers"
        " (TimeSformer, ViViT, UniFormerV2).\n\ncommands:\n" + "\n".join(lines) + "\n\n`vt <command> --help` lists"
        " a command's options.\n"
    )


def main(args: list[str] | None = None) -> None:
    """Console entry point ``vt``."""
    argv = sys.argv[1:] if args is None else list(args)
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(usage())
        sys.exit(0 if argv else 2)
    if argv[0] not in COMMANDS:
        close = difflib.get_close_matches(argv[0], list(COMMANDS), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        sys.exit(f"vt: unknown command {argv[0]!r}{hint}\n\n{usage()}")
    if argv[0] in EXTRA_COMMANDS:
        try:
            module = importlib.import_module(EXTRA_COMMANDS[argv[0]])
        except ModuleNotFoundError as e:
            if e.name != EXTRA_COMMANDS[argv[0]]:
                raise
            sys.exit(f"vt {argv[0]}: not available in this version")
        sys.exit(module.main(argv[1:]))
    try:
        with data_errors_for_users(sys.argv if args is None else argv):  # a bad video: one line, naming it
            run_cli(None if args is None else argv)  # None: LightningCLI reads sys.argv (no "both given" warning)
    except TrainingInterrupted as e:  # the checkpoint is saved; say how to resume, exit as a shell would
        sys.stderr.write(e.message + "\n")
        sys.exit(e.exit_code)
    except SIGTERMException:  # Lightning stopped outside training batches (e.g. in the sanity check)
        sys.stderr.write("vt: interrupted by SIGTERM before a training step completed; no checkpoint written\n")
        sys.exit(143)


if __name__ == "__main__":
    main()
