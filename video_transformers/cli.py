"""The ``vt`` command: a LightningCLI (``fit``, ``validate``, ``test``, ``predict``) over
:class:`VideoClassifier` and :class:`VideoDataModule`.

Sizes are stated once, in ``data``: the class count and names, frames and crop size are linked into
``model``.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from video_transformers.data import VideoDataModule
from video_transformers.data.errors import data_errors_for_users
from video_transformers.lit import VideoClassifier
from video_transformers.lit.callbacks import TRACKING_CALLBACKS, LogConfig
from video_transformers.lit.checkpoint_io import CLI_TRUST_HINT, AtomicCheckpointIO
from video_transformers.lit.interrupt import GracefulInterrupt, TrainingInterrupted
from video_transformers.safety.checkpoints import safe_torch_load
from video_transformers.safety.metadata import validate_hparams


class VideoTransformersCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001 (jsonargparse parser)
        for key, callback in TRACKING_CALLBACKS.items():  # always on; configurable as --<key>.<arg>
            parser.add_lightning_class_args(callback, key)
        parser.link_arguments("data.num_frames", "model.num_frames")
        parser.link_arguments("data.crop_size", "model.img_size")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
        parser.add_argument(
            "--trust_checkpoint",
            type=bool,
            default=False,
            help="Allow full unpickling of --ckpt_path (it can run code stored in the file): only for trusted files",
        )

    # -- issue 9: checkpoints are read weights-only, written atomically; fit stops cleanly on signals --
    def parse_arguments(self, parser, args) -> None:  # noqa: ANN001 (jsonargparse types)
        self.argv = list(args) if isinstance(args, (list, tuple)) else sys.argv[1:]  # for the resume command
        super().parse_arguments(parser, args)

    def _parse_ckpt_path(self) -> None:
        """Lightning's merge of the checkpoint's hyper-parameters into the config, reading the file with
        :func:`safe_torch_load` and validating the hyper-parameters (types, class names, sizes) first."""
        if not self.config.get("subcommand"):
            return
        ckpt_path = self.config[self.config.subcommand].get("ckpt_path")
        if not (ckpt_path and Path(ckpt_path).is_file()):
            return
        trust = bool(self.config[self.config.subcommand].get("trust_checkpoint", False))
        ckpt = safe_torch_load(ckpt_path, trust=trust, hint=CLI_TRUST_HINT)
        hparams = dict(validate_hparams(ckpt.get("hyper_parameters", {}), where=str(ckpt_path)))
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        if "_class_path" in hparams:
            hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        try:
            self.config = self.parser.parse_object({self.config.subcommand: {"model": hparams}}, self.config)
        except SystemExit:
            sys.stderr.write("Parsing of ckpt_path hyperparameters failed!\n")
            raise

    def instantiate_trainer(self, **kwargs):  # noqa: ANN003, ANN201 (LightningCLI signature)
        trainer_config = self._get(self.config_init, "trainer", default={})
        plugins = kwargs.get("plugins", trainer_config.get("plugins"))
        plugins = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO(trust=bool(self._get(self.config, "trust_checkpoint", default=False))))
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
        save_config_callback=LogConfig,  # config.yaml in the log dir, and the resolved config in the logger
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "vt"},
    )


# Commands beyond the Trainer's: ``vt <name> ...`` runs ``<module>.main(argv) -> int``.
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


def main(args: list[str] | None = None) -> None:
    """Console entry point ``vt``."""
    argv = sys.argv[1:] if args is None else list(args)
    if argv and argv[0] in EXTRA_COMMANDS:
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
