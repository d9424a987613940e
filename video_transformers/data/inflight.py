"""Data-loader failures that name the video: which file each worker is decoding, so a worker that dies without
raising (a crash inside a decoder library, an out-of-memory kill) or hangs past the loader's timeout is reported
with the file's name instead of PyTorch's bare "DataLoader worker (pid 1234) exited unexpectedly" / "DataLoader
timed out"; and an error raised in a worker reaches the main process as one line naming the file, not as a
wrapped traceback.

Public interfaces only: the dataset marks its video through :func:`torch.utils.data.get_worker_info`, and
:class:`ReportingDataLoader` wraps the iterator ``DataLoader.__iter__`` returns.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, get_worker_info

from video_transformers.data.errors import VideoDataError
from video_transformers.data.workers import forking_workers


class InFlight:
    """Per-worker marker files in a private temporary folder: :meth:`mark` names the video a worker starts
    decoding (``None`` when it is done). Only the folder's name is pickled into the workers."""

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="vt-inflight-")
        weakref.finalize(self, shutil.rmtree, self.folder, True)

    def __getstate__(self) -> dict[str, Any]:
        return {"folder": self.folder}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.folder = state["folder"]  # a worker's copy: no finalizer, the main process owns the folder

    def mark(self, path: str | Path | None) -> None:
        info = get_worker_info()
        if info is not None:  # in the main process an error has its own traceback
            (Path(self.folder) / str(info.id)).write_text("" if path is None else str(path))

    def current(self) -> dict[int, str]:
        """``{worker id: video}`` for the workers that were decoding when last seen."""
        out = {}
        for f in Path(self.folder).glob("[0-9]*"):
            text = f.read_text()
            if text:
                out[int(f.name)] = text
        return out


# What torch's loader errors say, read from their text: the one place that does. A worker's exception is
# re-raised in the main process as the same type with the message "Caught <Type> in DataLoader worker process
# <n>.\nOriginal Traceback (most recent call last): ... <Type>: <message>" (ExceptionWrapper.reraise,
# torch/utils/data/_utils/__init__.py); a dead worker raises RuntimeError("DataLoader worker (pid(s) ...)
# exited unexpectedly" / "... is killed by signal ..."), a timeout RuntimeError("DataLoader timed out after
# <n> seconds"). Checked on torch 2.14.1 (the formats date from torch 1.5).
_RAISED = re.compile(r"^Caught (\w+) in DataLoader worker process (\d+)\.\n", re.S)


def read_loader_error(e: BaseException) -> tuple[str, int | None, str] | None:
    """``("raised", worker, original message)``, ``("died", None, text)`` or ``("timeout", None, text)`` for
    an error from a loader with workers; ``None`` for anything else."""
    text = str(e)
    if m := _RAISED.match(text):
        lines = text.splitlines()
        head = re.compile(rf"^([\w.]+\.)?{m[1]}: ")  # the traceback's last entry: "<module>.<Type>: <message>"
        start = next((i for i in range(len(lines) - 1, -1, -1) if head.match(lines[i])), None)
        if start is None:
            return None
        return "raised", int(m[2]), head.sub("", "\n".join(lines[start:]), count=1)
    if isinstance(e, RuntimeError) and "DataLoader worker" in text:
        return "died", None, text
    if isinstance(e, RuntimeError) and "DataLoader timed out" in text:
        return "timeout", None, text
    return None


class _Reporting(Iterator):
    """The loader's iterator, with its failures rewritten as :class:`VideoDataError` naming the video."""

    def __init__(self, iterator: Iterator, inflight: InFlight) -> None:
        self.iterator, self.inflight = iterator, inflight

    def __len__(self) -> int:
        return len(self.iterator)

    def __next__(self) -> Any:
        try:
            return next(self.iterator)
        except (VideoDataError, RuntimeError) as e:
            what = read_loader_error(e)
            if what is None:
                raise
            kind, worker, message = what
            if kind == "raised":
                if not isinstance(e, VideoDataError):
                    raise
                raise VideoDataError(f"{message} (in data-loader worker {worker})") from e
            files = self.inflight.current()
            if not files:
                raise
            listing = "; ".join(f"worker {w}: {p}" for w, p in sorted(files.items()))
            problem = "a data-loader worker died" if kind == "died" else "no batch within data.loader_timeout"
            raise VideoDataError(f"{problem} while decoding {listing} ({message})") from e


class ReportingDataLoader(DataLoader):
    """A ``DataLoader`` whose dataset marks the videos it decodes in ``inflight``; see the module docstring."""

    def __init__(self, *args: Any, inflight: InFlight, **kwargs: Any) -> None:
        self.inflight = inflight
        super().__init__(*args, **kwargs)

    def __iter__(self) -> Iterator:
        if self.num_workers == 0:
            return super().__iter__()
        with forking_workers():  # workers leave the group's SIGTERM to this process (data/workers.py)
            iterator = super().__iter__()
        return _Reporting(iterator, self.inflight)
