"""Data-loader failures that name the video: which file each worker is decoding, so a worker that dies without
raising (a crash inside a decoder library, an out-of-memory kill) or hangs past the loader's timeout is reported
with the file's name instead of PyTorch's bare "DataLoader worker (pid 1234) exited unexpectedly" / "DataLoader
timed out"; and an error raised in a worker reaches the main process as one line naming the file, not as a
wrapped traceback."""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, get_worker_info
from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter

from video_transformers.data.errors import VideoDataError

_WRAPPED = "Caught VideoDataError in DataLoader worker process "


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


class _ReportingIter(_MultiProcessingDataLoaderIter):
    def __init__(self, loader: ReportingDataLoader) -> None:
        self._inflight = loader.inflight
        super().__init__(loader)

    def _next_data(self) -> Any:
        try:
            return super()._next_data()
        except VideoDataError as e:
            text = str(e)
            if not text.startswith(_WRAPPED):
                raise
            worker = text[len(_WRAPPED) :].split(".", 1)[0]
            last = next((line for line in reversed(text.splitlines()) if "VideoDataError: " in line), text)
            message = last.split("VideoDataError: ", 1)[1]
            raise VideoDataError(f"{message} (in data-loader worker {worker})") from e
        except RuntimeError as e:
            died, timed_out = "DataLoader worker" in str(e), "DataLoader timed out" in str(e)
            files = self._inflight.current()
            if not (died or timed_out) or not files:
                raise
            listing = "; ".join(f"worker {w}: {p}" for w, p in sorted(files.items()))
            what = "a data-loader worker died" if died else "no batch within data.loader_timeout"
            raise VideoDataError(f"{what} while decoding {listing} ({e})") from e


class ReportingDataLoader(DataLoader):
    """A ``DataLoader`` whose dataset marks the videos it decodes in ``inflight``; see the module docstring."""

    def __init__(self, *args: Any, inflight: InFlight, **kwargs: Any) -> None:
        self.inflight = inflight
        super().__init__(*args, **kwargs)

    def _get_iterator(self) -> Any:
        return super()._get_iterator() if self.num_workers == 0 else _ReportingIter(self)
