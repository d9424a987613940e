"""Lightning wrappers: the classifier module and multi-view aggregation."""

from video_transformers.lit.classifier import VideoClassifier

__all__ = ["VideoClassifier"]
