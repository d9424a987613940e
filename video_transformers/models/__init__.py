"""Model families; importing this package registers every variant."""

from video_transformers.models import (
    timesformer,  # noqa: F401  (registers variants)
    uniformerv2,  # noqa: F401  (registers variants)
    vivit,  # noqa: F401  (registers variants)
)
from video_transformers.models.registry import create_model, get_entry, list_models, register_model

__all__ = ["create_model", "get_entry", "list_models", "register_model"]
