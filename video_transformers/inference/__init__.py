"""Using trained models: loading with their data settings, multi-view clips, sliding windows (with streaming
reuse for ViViT's factorised encoder), attention rollout and export. The ``vt predict``, ``vt explain`` and
``vt export`` commands are thin wrappers over these."""

from video_transformers.inference.clips import View, Window, expand_paths, iter_grid_frames, view_clips
from video_transformers.inference.loading import ClipSpec, LoadedModel, load_model
from video_transformers.inference.windows import ClipWindowScorer, FactorisedEncoderStream, window_scorer

__all__ = [
    "ClipSpec",
    "ClipWindowScorer",
    "FactorisedEncoderStream",
    "LoadedModel",
    "View",
    "Window",
    "expand_paths",
    "iter_grid_frames",
    "load_model",
    "view_clips",
    "window_scorer",
]
