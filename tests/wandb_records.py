"""Read an offline W&B run's transaction log (``run-<id>.wandb``, what ``wandb sync`` uploads): offline runs of
wandb >= 0.19 write no ``wandb-summary.json``, so tests read the summary the run recorded from here.

The file is LevelDB's log format as wandb writes it: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then
32 KiB blocks of chunks ``<crc32 u32, length u16, type u8, data>`` (type 1 full, 2 first, 3 middle, 4 last; a
block's last < 7 bytes are padding); each record is a ``wandb_internal_pb2.Record`` protobuf.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any

BLOCK, HEADER = 32768, 7


def records(path: Path) -> list[Any]:
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:HEADER])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), f"{path}: not a W&B transaction log"
    out, pos, buf = [], HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if pos + HEADER + length > len(data):  # a chunk the writer has not finished
            break
        if kind == 0:  # zero padding up to the block's end
            pos += left
            continue
        buf += data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            out.append(record)
            buf = b""
    return out


def summary(run_dir: Path, wait_for: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
    """The run summary: the last value of every top-level key the run's summary records set. wandb's service
    writes the log after ``run.finish()`` returns: with ``wait_for``, re-read until that key is there."""
    (log,) = run_dir.glob("run-*.wandb")
    deadline = time.monotonic() + timeout
    while True:
        out: dict[str, Any] = {}
        try:
            logged = records(log)
        except Exception:  # noqa: BLE001 (protobuf's DecodeError: the service is mid-write; read again)
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
            continue
        for record in logged:
            if record.WhichOneof("record_type") == "summary":
                for item in record.summary.update:
                    if item.key:
                        out[item.key] = json.loads(item.value_json)
        if wait_for is None or wait_for in out or time.monotonic() > deadline:
            return out
        time.sleep(0.2)
