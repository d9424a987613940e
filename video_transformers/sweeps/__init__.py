"""W&B sweep definitions read and expanded without a W&B server: :mod:`video_transformers.sweeps.definition`."""

from video_transformers.sweeps.definition import (
    SweepError,
    expand_command,
    format_value,
    grid,
    load_sweep,
    runs,
    sample,
    validate,
)

__all__ = ["SweepError", "expand_command", "format_value", "grid", "load_sweep", "runs", "sample", "validate"]
