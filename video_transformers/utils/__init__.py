"""Utilities shared by commands and benchmarks (model profiling)."""

from video_transformers.utils.profile import (
    AttentionCall,
    FlopCount,
    ModelProfile,
    attention_pattern,
    build_model,
    count_flops,
    count_params,
    profile_model,
    video_input_shape,
)

__all__ = [
    "AttentionCall",
    "FlopCount",
    "ModelProfile",
    "attention_pattern",
    "build_model",
    "count_flops",
    "count_params",
    "profile_model",
    "video_input_shape",
]
