"""Shared fixtures: a tiny copy of the embedded dataset, built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(min(2, torch.get_num_threads()))

REPO = Path(__file__).resolve().parents[1]
TINY_SPLITS = {"train": 2, "val": 1, "test": 1}  # videos per class: 48 videos in all


@pytest.fixture(scope="session")
def embedded_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from video_transformers.data import synthetic

    return synthetic.build(tmp_path_factory.mktemp("embedded") / "embedded", splits=TINY_SPLITS)
