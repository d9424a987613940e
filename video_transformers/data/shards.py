"""Shards: a dataset's videos packed, as their original encoded bytes, into LitData chunks that stream from a
local folder or object storage (``vt data shard``; read back by :mod:`video_transformers.data.streaming`).

Layout at ``OUT`` (a folder, or ``s3://bucket/prefix`` with ``endpoint_url`` for S3-compatible stores)::

    OUT/shards.json            the manifest: class names, the dataset it came from, videos and bytes per split
    OUT/<split>/index.json     LitData's index of the split's chunks
    OUT/<split>/chunk-*.bin    ~64 MB chunks; one item per video

An item is ``{"video": bytes, "label": int, "index": int, "name": str, "info": str}``: ``index`` is the video's
position in its split (the ``video_index`` of its clips, so multi-view scores aggregate per video across ranks),
``name`` its path under the dataset root (for messages), ``info`` the :class:`~video_transformers.data.video.VideoInfo`
the check pass read (JSON), so streaming needs no probe. Only videos that pass the check pass are packed.

Why LitData (``litdata.optimize`` + ``StreamingDataset``): it is Lightning's own engine, and the loader it ships
(``StreamingDataLoader``) has the ``state_dict`` / ``load_state_dict`` that Lightning's fit loop saves in every
checkpoint and restores on resume, so a resumed epoch continues where it stopped; it splits chunks across ranks
and loader workers itself (disjoint, tested on 2 ranks), reads S3 through boto3 / obstore with the client's
``endpoint_url``, and keeps a bounded local cache of downloaded chunks. WebDataset has no mid-epoch resume and no
exact split of samples across ranks (it splits shards, so ranks x workers must divide the shard count);
mosaicml-streaming has both; it was not measured against LitData (its last release, 0.13 of 2025-07, is older than
LitData's 0.2.76 of 2026-09), and reading a chunk costs little next to decoding the video either way
(docs/performance.md, "Shards against files": 1.05x the rate of files).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MANIFEST = "shards.json"
FORMAT = "video_transformers.shards/1"


@dataclass(frozen=True)
class Store:
    """Where a shard set lives: a local folder or ``s3://bucket/prefix``; ``endpoint_url`` for S3-compatible
    stores (MinIO, Ceph, R2, moto). Credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID`` / ``~/.aws``);
    ``AWS_ENDPOINT_URL`` is read by boto3 when ``endpoint_url`` is not given."""

    url: str
    endpoint_url: str | None = None

    def __post_init__(self) -> None:
        if "://" in self.url and not self.url.startswith("s3://"):
            raise ValueError(f"{self.url}: shards live in a local folder or at s3://bucket/prefix")
        if self.remote and len(self.url) <= len("s3://"):
            raise ValueError(f"{self.url}: expected s3://bucket[/prefix]")

    @property
    def remote(self) -> bool:
        return self.url.startswith("s3://")

    @property
    def storage_options(self) -> dict[str, Any]:
        """boto3 client arguments, as LitData passes them on."""
        return {"endpoint_url": self.endpoint_url} if self.endpoint_url else {}

    def join(self, *parts: str) -> str:
        if self.remote:
            return "/".join([self.url.rstrip("/"), *parts])
        return str(Path(self.url).expanduser().resolve().joinpath(*parts))

    def _bucket_key(self, name: str) -> tuple[str, str]:
        bucket, _, prefix = self.url[len("s3://") :].partition("/")
        return bucket, "/".join(p for p in (prefix.strip("/"), name) if p)

    def _s3(self) -> Any:
        import boto3

        return boto3.client("s3", **self.storage_options)

    def read_text(self, name: str) -> str | None:
        """The text of ``name`` under the store, ``None`` when it does not exist."""
        if not self.remote:
            path = Path(self.join(name))
            return path.read_text() if path.is_file() else None
        from botocore.exceptions import ClientError

        bucket, key = self._bucket_key(name)
        try:
            return self._s3().get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise

    def write_text(self, name: str, text: str) -> None:
        if not self.remote:
            path = Path(self.join(name))
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.partial")
            tmp.write_text(text)
            os.replace(tmp, path)
            return
        bucket, key = self._bucket_key(name)
        self._s3().put_object(Bucket=bucket, Key=key, Body=text.encode())


def allow_plain_http(endpoint_url: str | None) -> None:
    """Let LitData's obstore client reach an ``http://`` endpoint (a MinIO or moto server without TLS).

    LitData 0.2.76 builds obstore's ``S3Store`` with fixed client options (litdata/streaming/downloader.py:206
    ``_OBSTORE_CLIENT_OPTIONS``), and obstore then refuses plain http ("builder error", BadScheme: obstore issue
    #159). Adding ``allow_http`` to those options is the smallest fix; it is inherited by forked loader workers.
    """
    if not (endpoint_url or os.environ.get("AWS_ENDPOINT_URL", "")).startswith("http://"):
        return
    from litdata.streaming import downloader

    options = getattr(downloader, "_OBSTORE_CLIENT_OPTIONS", None)
    if isinstance(options, dict):
        options["allow_http"] = "true"


def require_litdata(what: str) -> None:
    """Raise a one-line error when LitData (the ``stream`` extra) is not installed."""
    try:
        import litdata  # noqa: F401
    except ImportError as e:
        raise ImportError(f"{what} needs LitData: pip install 'video-transformers[stream]' (litdata, boto3)") from e


def read_manifest(store: Store) -> dict[str, Any]:
    """The manifest of the shard set at ``store``, with a clear error when there is none."""
    try:
        text = store.read_text(MANIFEST)
    except Exception as e:  # boto3 / network errors: one line naming the place
        raise ValueError(f"{store.join(MANIFEST)}: cannot read the shard manifest ({type(e).__name__}: {e})") from e
    if text is None:
        raise ValueError(
            f"{store.join(MANIFEST)}: no shard manifest (make shards with: vt data shard --config C --out {store.url})"
        )
    manifest = json.loads(text)
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{store.join(MANIFEST)}: format {manifest.get('format')!r}; expected {FORMAT!r}")
    return manifest


# -- packing ----------------------------------------------------------------------------------------------------
def _item(job: tuple[int, str, int, str, str]) -> dict[str, Any]:
    """One video as a LitData item (runs in ``optimize``'s workers)."""
    index, path, label, name, info = job
    return {"video": Path(path).read_bytes(), "label": label, "index": index, "name": name, "info": info}


def _name(path: Path, root: Path | None) -> str:
    try:
        return str(path.relative_to(root)) if root is not None else str(path)
    except ValueError:
        return str(path)


def pack(
    dm: Any,
    store: Store,
    *,
    splits: Sequence[str] = ("train", "val", "test"),
    chunk_bytes: str | int = "64MB",
    workers: int = 1,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Pack the videos of ``splits`` of a :class:`~video_transformers.data.VideoDataModule` into ``store``.

    Each split passes the data module's check pass first (``data.on_bad_video`` decides whether a bad video
    stops the packing or is left out with a warning). Returns the manifest it wrote.
    """
    require_litdata("vt data shard")
    from litdata import optimize

    if not overwrite and store.read_text(MANIFEST) is not None:
        raise FileExistsError(f"{store.join(MANIFEST)}: shards exist already (pass --overwrite to replace them)")
    allow_plain_http(store.endpoint_url)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "dataset": dm.dataset,
        "root": str(dm.root),
        "class_names": list(dm.class_names),
        "splits": {},
    }
    for split in splits:
        records, infos = dm.checked_split(split)
        jobs = [
            (i, str(rec.path), int(rec.label), _name(Path(rec.path), dm.root), json.dumps(dataclasses.asdict(info)))
            for i, (rec, info) in enumerate(zip(records, infos, strict=True))
        ]
        size = sum(Path(rec.path).stat().st_size for rec in records)
        log.info("packing %d %s videos (%.1f MB) into %s", len(jobs), split, size / 1e6, store.join(split))
        optimize(
            fn=_item,
            inputs=jobs,
            output_dir=store.join(split),
            chunk_bytes=chunk_bytes,
            num_workers=max(1, min(workers, len(jobs))),
            mode="overwrite",
            storage_options=store.storage_options,
            start_method="fork",  # inherits allow_plain_http; the packers only read files
            keep_data_ordered=True,
            reorder_files=False,
            verbose=True,  # LitData's progress bar with an ETA (and its one-line advertisement)
        )
        manifest["splits"][split] = {"videos": len(jobs), "bytes": size}
    store.write_text(MANIFEST, json.dumps(manifest, indent=1))
    return manifest
