"""video_transformers: faithful video transformers (TimeSformer, ViViT, UniFormerV2) with Lightning."""

from video_transformers.models import create_model, list_models
from video_transformers.pretrained import from_pretrained, init_from_image, list_formats
from video_transformers.version import __version__

__all__ = ["__version__", "create_model", "from_pretrained", "init_from_image", "list_formats", "list_models"]
