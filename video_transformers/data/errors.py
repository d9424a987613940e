"""One error type for unusable data, with a ``kind`` that ``vt data check`` counts by, and how it reaches the
user: one line naming the file and the reason, the traceback only on request (``--verbose`` or ``VT_DEBUG=1``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

# kinds, in the order ``vt data check`` lists them
KINDS = (
    "annotation",
    "missing",
    "broken_link",  # dangling symlink, symlink loop
    "unsupported",  # listed as a video but not one (an image renamed .mp4)
    "ignored",  # not a video file, in a layout that lists folders (a .gif in a class folder)
    "unreadable",
    "truncated",
    "zero_frames",
    "audio_only",
    "too_short",
    "duplicate",
)


class VideoDataError(Exception):
    """A video or annotation cannot be used; the message names the file (or ``file:row``) and what was expected."""

    def __init__(self, message: str, kind: str = "unreadable") -> None:
        super().__init__(message)
        self.kind = kind


@contextmanager
def data_errors_for_users(argv: list[str], prog: str = "vt") -> Iterator[None]:
    """Around a command: a :class:`VideoDataError` becomes ``prog: <message>`` on stderr and exit status 1,
    without a traceback unless ``--verbose`` is in ``argv`` (removed from it: pass the list the command
    parses, ``sys.argv`` itself where LightningCLI reads it) or ``VT_DEBUG=1``."""
    verbose = os.environ.get("VT_DEBUG", "") not in ("", "0")
    while "--verbose" in argv:
        argv.remove("--verbose")
        verbose = True
    try:
        yield
    except VideoDataError as e:
        if verbose:
            raise
        sys.stderr.write(f"{prog}: {e}\n")
        sys.exit(1)
