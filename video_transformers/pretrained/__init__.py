"""Pretrained weights: image-model initialisation and official video checkpoints.

Importing this package registers every checkpoint format that :func:`from_pretrained` reads and every
family's image initialisation behind :func:`init_from_image`.
"""

from video_transformers.pretrained import (
    hf_folder,  # noqa: F401  (registers this suite's exported Hugging Face folder)
    lightning_ckpt,  # noqa: F401  (registers this suite's .ckpt format)
    scenic,  # noqa: F401  (registers scenic_vivit)
    timesformer,  # noqa: F401  (registers its formats and image initialisation)
    uniformerv2,  # noqa: F401  (registers its formats and image initialisation)
    vivit,  # noqa: F401  (registers its formats and image initialisation)
)
from video_transformers.pretrained.common import (
    PretrainedError,
    from_pretrained,
    image_state_dict,
    list_formats,
    load_checked,
    load_state_dict_file,
    register_format,
)
from video_transformers.pretrained.hub import resolve_source
from video_transformers.pretrained.image_init import init_from_image, register_image_init

__all__ = [
    "PretrainedError",
    "from_pretrained",
    "image_state_dict",
    "init_from_image",
    "list_formats",
    "load_checked",
    "load_state_dict_file",
    "register_format",
    "register_image_init",
    "resolve_source",
]
