"""``AtomicCheckpointIO``: the Lightning checkpoint plugin ``vt`` installs by default.

Saving: the checkpoint is serialised in memory, written to a temporary file in the target's folder,
flushed and fsync'ed, then moved over the target with ``os.replace`` (atomic on POSIX), and the folder is
fsync'ed. A crash, a kill or a full disk during the write leaves the previous file at that path intact
and no partial file behind.

Loading: ``weights_only=True`` always (tensors and plain containers; nothing in the file runs), unless the
run was started with ``--trust_checkpoint true`` for a checkpoint whose source is trusted.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

from video_transformers.safety.checkpoints import safe_torch_load

log = logging.getLogger(__name__)

CLI_TRUST_HINT = "only if you trust its source, add --trust_checkpoint true to the command"
_CHUNK = 64 << 20


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the previous file at the path (if any) is unchanged."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_chunks(f: io.BufferedWriter, data: memoryview) -> None:
    """Write ``data`` in chunks (the step tests interrupt to simulate a crash or a full disk)."""
    for i in range(0, len(data), _CHUNK):
        f.write(data[i : i + _CHUNK])


def atomic_write(path: str | Path, data: bytes | memoryview, *, write: Callable | None = None) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would otherwise become the checkpoint's mode
        with os.fdopen(fd, "wb") as f:
            (write or write_chunks)(f, memoryview(data))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise CheckpointWriteError(
                e.errno,
                f"{path}: checkpoint not written ({e.strerror or e}); the previous file there, if any, is intact",
            ) from e
        raise
    with suppress(OSError):  # make the rename itself durable; not every filesystem allows opening a folder
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _is_local(path: _PATH) -> bool:
    s = str(path)
    return "://" not in s or s.startswith("file://")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Atomic local saves and weights-only loads; remote (fsspec) paths keep Lightning's behaviour on save.

    Args:
        trust: allow full unpickling on load (``vt ... --trust_checkpoint true``); only for trusted files.
    """

    def __init__(self, trust: bool = False) -> None:
        super().__init__()
        self.trust = trust

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write(str(path).removeprefix("file://"), buffer.getbuffer(), write=write_chunks)

    def load_checkpoint(
        self, path: _PATH, map_location: Any | None = lambda storage, loc: storage, weights_only: bool | None = None
    ) -> dict[str, Any]:
        # weights_only=False from the Trainer (``--weights_only false``) is not enough: trust is explicit
        trust = self.trust and weights_only is not True
        if not _is_local(path):
            return super().load_checkpoint(path, map_location=map_location, weights_only=not trust)
        local = Path(str(path).removeprefix("file://"))
        if not local.is_file():
            raise FileNotFoundError(f"Checkpoint file not found: {local}")
        with local.open("rb") as f:
            return safe_torch_load(f, trust=trust, map_location=map_location, hint=CLI_TRUST_HINT)
