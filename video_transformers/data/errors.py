"""One error type for unusable data, with a ``kind`` that ``vt data check`` counts by."""

from __future__ import annotations

# kinds, in the order ``vt data check`` lists them
KINDS = ("annotation", "missing", "unreadable", "zero_frames", "audio_only", "too_short", "duplicate")


class VideoDataError(Exception):
    """A video or annotation cannot be used; the message names the file (or ``file:row``) and what was expected."""

    def __init__(self, message: str, kind: str = "unreadable") -> None:
        super().__init__(message)
        self.kind = kind
