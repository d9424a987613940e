"""The embedded synthetic dataset (``data.dataset: embedded``): :mod:`video_transformers.data.synthetic` writes
it in the ``csv`` layout with its twelve fixed classes and five time-reversed pairs."""

from __future__ import annotations

from video_transformers.data import synthetic
from video_transformers.data.layouts import Format
from video_transformers.data.layouts.generic import read_csv_split

LAYOUTS = {
    "embedded": lambda split_id: Format(
        lambda root: list(synthetic.CLASS_NAMES),
        read_csv_split,
        lambda root: list(synthetic.PAIRS),
        len(synthetic.CLASS_NAMES),
    ),
}
