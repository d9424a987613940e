"""video_transformers: faithful video transformers (TimeSformer, ViViT, UniFormerV2) with Lightning."""

from video_transformers.models import create_model, list_models
from video_transformers.pretrained import from_pretrained, init_from_image, list_formats

__version__ = "0.1.0"

__all__ = ["__version__", "create_model", "from_pretrained", "init_from_image", "list_formats", "list_models"]
