"""The ``vt`` command: a LightningCLI (``fit``, ``validate``, ``test``, ``predict``) over
:class:`VideoClassifier` and :class:`VideoDataModule`.

Sizes are stated once, in ``data``: the class count and names, frames and crop size are linked into
``model``.
"""

from __future__ import annotations

import importlib
import os
import sys

from lightning.pytorch.cli import LightningCLI

from video_transformers.data import VideoDataModule
from video_transformers.lit import VideoClassifier
from video_transformers.lit.callbacks import LogConfig


class VideoTransformersCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001 (jsonargparse parser)
        parser.link_arguments("data.num_frames", "model.num_frames")
        parser.link_arguments("data.crop_size", "model.img_size")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")


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
    run_cli(argv)


if __name__ == "__main__":
    main()
