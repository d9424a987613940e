"""The data pipeline's own exception type: every message names the file (and row) at fault."""


class VideoDataError(ValueError):
    """A video or annotation file cannot be used; the message says which and why."""
