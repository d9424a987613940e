"""The ``vt`` command: a LightningCLI (``fit``, ``validate``, ``test``, ``predict``) over
:class:`VideoClassifier` and :class:`VideoDataModule`.

Sizes are stated once, in ``data``: the class count and names, frames and crop size are linked into
``model``.
"""

from __future__ import annotations

import os
import sys

from lightning.pytorch.cli import LightningCLI

from video_transformers.data import VideoDataModule
from video_transformers.lit import VideoClassifier


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
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "vt"},
    )


def main(args: list[str] | None = None) -> None:
    """Console entry point ``vt``."""
    run_cli(sys.argv[1:] if args is None else args)


if __name__ == "__main__":
    main()
