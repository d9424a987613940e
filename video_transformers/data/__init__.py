"""Datasets, clip samplers, transforms and the LightningDataModule."""

from video_transformers.data.datamodule import VideoDataModule
from video_transformers.data.errors import VideoDataError

__all__ = ["VideoDataError", "VideoDataModule"]
