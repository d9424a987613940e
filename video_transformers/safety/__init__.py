"""Guards against untrusted files and absurd sizes: checkpoint metadata validators (``metadata``) and
size limits checked before anything large is allocated (``limits``)."""

from video_transformers.safety.limits import LIMITS, SizeError, SizeLimits, check_model_kwargs
from video_transformers.safety.metadata import (
    MetadataError,
    validate_class_names,
    validate_hf_config,
    validate_hparams,
    validate_mean_std,
    validate_model_metadata,
    validate_preprocessor_config,
)

__all__ = [
    "LIMITS",
    "MetadataError",
    "SizeError",
    "SizeLimits",
    "check_model_kwargs",
    "validate_class_names",
    "validate_hf_config",
    "validate_hparams",
    "validate_mean_std",
    "validate_model_metadata",
    "validate_preprocessor_config",
]
