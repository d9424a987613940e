"""video_transformers: faithful video transformers (TimeSformer, ViViT, UniFormerV2) with Lightning."""

from video_transformers.models import create_model, list_models

__version__ = "0.1.0"

__all__ = ["__version__", "create_model", "list_models"]
