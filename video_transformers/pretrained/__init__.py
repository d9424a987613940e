"""Pretrained weights: image-model initialisation and official video checkpoints.

Importing this package registers every checkpoint format that :func:`from_pretrained` reads.
"""

from video_transformers.pretrained import (
    timesformer,  # noqa: F401  (registers its formats)
    uniformerv2,  # noqa: F401  (registers its formats)
    vivit,  # noqa: F401  (registers its formats)
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

__all__ = [
    "PretrainedError",
    "from_pretrained",
    "image_state_dict",
    "list_formats",
    "load_checked",
    "load_state_dict_file",
    "register_format",
]
