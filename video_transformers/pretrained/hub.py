"""Checkpoint sources by name, resolved to local paths through ``huggingface_hub`` (its cache, revisions,
``HF_HUB_OFFLINE``, ``HF_TOKEN``) and the table of official checkpoints (:mod:`.catalog`). Nothing here
downloads by itself: every transfer is ``snapshot_download`` / ``hf_hub_download``.

Strings accepted wherever a checkpoint is (``from_pretrained``, ``--model.init_from``, ``--ckpt_path``):

* a local file or folder (always wins, as in ``transformers``);
* a catalog name, e.g. ``timesformer_base_k400`` (``vt info --pretrained`` lists them);
* ``org/name`` or ``hf-hub:org/name`` (timm's prefix): a model folder on the Hub (``config.json`` + weights);
* ``...@revision``: a branch, tag or commit (``refs%2Fpr%2F1`` for a PR ref, URL-encoded as
  ``huggingface_hub.HfFileSystem`` writes it);
* ``hf-hub:org/name[@revision]/path/in/repo.pyth``: one file of a repo (``HfFileSystem``'s layout).

A bare ``org/name`` counts as a hub id only if no such local path exists and it has no checkpoint-file
suffix, so a mistyped local path still says "no such file".

Integrity: a weights file is checked against the catalog's sha256 where one is recorded, against the Hub's
own sha256 (Git LFS files are cached under ``blobs/<sha256>``), and, for catalog sources without a recorded
hash, against the hash seen at first use (kept in ``$VT_WEIGHTS_DIR/checksums.json``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from video_transformers.pretrained import catalog
from video_transformers.pretrained.errors import PretrainedError

log = logging.getLogger(__name__)

HUB_PREFIX = "hf-hub:"
CHECKPOINT_SUFFIXES = (".ckpt", ".pyth", ".pth", ".pt", ".bin", ".safetensors")
# what a model folder needs: configs, the model card, safetensors weights (single or sharded)
FOLDER_FILES = [
    "config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "README.md",
    "test_report.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "model-*-of-*.safetensors",
]
_SHA256 = re.compile(r"[0-9a-f]{64}")
_BARE_ID = re.compile(r"[\w.-]+/[\w.-]+(@[^/]+)?")


class HubUnavailableError(PretrainedError):
    """A hub source is neither cached nor downloadable now; ``reason`` says why, ``command`` how to get it."""

    def __init__(self, hub: HubId, reason: str, weights_file: str | None = None) -> None:
        self.hub, self.reason, self.command = hub, reason, hub.download_command(weights_file)
        cache = hub_cache()
        super().__init__(
            f"{hub}: not in the Hugging Face cache ({cache}) and {reason}. Where there is network, run "
            f"`{self.command}` and copy {cache}/{hub.cache_folder} to this machine's cache (or set HF_HUB_CACHE "
            "to a copy), or download the files and pass their local path"
        )


@dataclass(frozen=True)
class HubId:
    """A model folder (``filename=None``) or one file in a Hugging Face model repo, at a revision."""

    repo_id: str
    revision: str | None = None
    filename: str | None = None

    def __str__(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        return f"{HUB_PREFIX}{self.repo_id}{rev}" + (f"/{self.filename}" if self.filename else "")

    @property
    def cache_folder(self) -> str:
        """The repo's folder in the hub cache (``huggingface_hub``'s ``models--org--name``)."""
        return "models--" + self.repo_id.replace("/", "--")

    def download_command(self, weights_file: str | None = None) -> str:
        """The ``hf`` CLI line that fills the cache with what this id needs (a folder: the whole repo, or its
        configs and ``weights_file``)."""
        what = f" {self.filename}" if self.filename else ""
        if weights_file and not self.filename:
            what = f' --include "*.json" --include "{weights_file}"'
        rev = f" --revision {self.revision}" if self.revision else ""
        return f"hf download {self.repo_id}{what}{rev}"


def weights_dir() -> Path:
    """Where local copies of pretrained weights are looked up: ``$VT_WEIGHTS_DIR`` or
    ``~/.cache/video_transformers/weights``."""
    return Path(os.environ.get("VT_WEIGHTS_DIR") or Path.home() / ".cache" / "video_transformers" / "weights")


def hub_cache() -> str:
    """The cache ``huggingface_hub`` uses now (``HF_HUB_CACHE``, ``HF_HOME/hub`` or its default)."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _looks_local(text: str) -> bool:
    """A bare string that names a local file rather than a repo: relative/absolute markers or a checkpoint suffix."""
    if text.startswith((".", "/", "~")) or "\\" in text or not _BARE_ID.fullmatch(text):
        return True
    return text.split("@", 1)[0].lower().endswith(CHECKPOINT_SUFFIXES)


def parse_hub_id(source: str) -> HubId | None:
    """``[hf-hub:]org/name[@revision][/path]`` -> :class:`HubId`; ``None`` for strings that are not hub ids.

    Without the prefix only ``org/name[@revision]`` is accepted (a folder), and only if it does not look
    like a local path (see the module docstring). A malformed prefixed id raises naming what is wrong.
    """
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    explicit = source.startswith(HUB_PREFIX)
    text = source[len(HUB_PREFIX) :] if explicit else source
    if not explicit and _looks_local(text):
        return None
    parts = text.strip("/").split("/")
    if len(parts) < 2:
        if explicit:
            raise PretrainedError(f"{source}: expected hf-hub:<org>/<name>[@revision][/file]")
        return None
    name, _, revision = parts[1].partition("@")
    repo_id, filename = f"{parts[0]}/{name}", "/".join(parts[2:]) or None
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        if explicit:
            raise PretrainedError(f"{source}: {str(e).splitlines()[0]}") from e
        return None
    if revision == "" and "@" in parts[1]:
        raise PretrainedError(f"{source}: empty revision after '@'")
    return HubId(repo_id, unquote(revision) or None, filename)


# -- resolving any source to a local path --------------------------------------------------------------
def resolve_source(source: str | Path) -> Path:
    """A local path for ``source`` (see the module docstring); downloads through ``huggingface_hub``.

    A string that is none of the accepted forms comes back as a path (that may not exist: the caller
    reports it). ``Path`` objects are always local.
    """
    if isinstance(source, Path):
        return source.expanduser()
    text = str(source)
    if not text.startswith(HUB_PREFIX):
        local = Path(text).expanduser()
        if local.exists():
            return local
        entry = catalog.get(text)
        if entry is not None:
            return fetch_checkpoint(entry)
    hub = parse_hub_id(text)
    return Path(text).expanduser() if hub is None else fetch(hub)


def fetch(hub: HubId, *, weights_file: str | None = None) -> Path:
    """The local path of a hub folder or file (from the cache, or downloaded), its weights sha256-checked.

    ``weights_file`` (folders) downloads only that weights file instead of every safetensors file;
    folders without safetensors weights get ``pytorch_model.bin`` (older ``transformers`` uploads).
    """
    from huggingface_hub import hf_hub_download, snapshot_download

    if hub.filename is not None:
        path = Path(_call(hub, hf_hub_download, hub.repo_id, hub.filename, revision=hub.revision))
        verify_hub_blob(path)
        return path
    patterns = FOLDER_FILES
    if weights_file is not None:  # the catalog names the weights file: fetch that one, not every conversion
        patterns = [f for f in FOLDER_FILES if not f.startswith("model")] + [weights_file]
    folder = Path(
        _call(hub, snapshot_download, hub.repo_id, revision=hub.revision, allow_patterns=patterns,
              weights_file=weights_file)
    )  # fmt: skip
    if not (folder / "config.json").is_file():
        raise PretrainedError(
            f"{hub}: no config.json in {folder}, so not a model folder; name one file of the repo instead "
            f"({HUB_PREFIX}{hub.repo_id}[@revision]/<path>)"
        )
    if weights_file is None and not any(folder.glob("*.safetensors")):
        _call(HubId(hub.repo_id, hub.revision, "pytorch_model.bin"), hf_hub_download, hub.repo_id,
              "pytorch_model.bin", revision=hub.revision)  # fmt: skip
    for file in sorted(folder.iterdir()):
        if file.suffix in CHECKPOINT_SUFFIXES:
            verify_hub_blob(file)
    return folder


def _call(hub: HubId, fn: Callable[..., str], *args: Any, weights_file: str | None = None, **kwargs: Any) -> str:
    """``fn(*args, **kwargs)`` (a ``huggingface_hub`` download) with its errors as one-line ``PretrainedError``."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return fn(*args, library_name="video-transformers", **kwargs)
    except LocalEntryNotFoundError as e:  # not cached, and offline or the Hub unreachable
        cause = e.__cause__ or e.__context__
        if constants.HF_HUB_OFFLINE:
            reason = "HF_HUB_OFFLINE=1"
        elif cause is not None:
            reason = f"the Hub is unreachable ({type(cause).__name__}: {_first_line(cause)})"
        else:
            reason = f"it cannot be fetched ({_first_line(e)})"
        raise HubUnavailableError(hub, reason, weights_file) from e
    except GatedRepoError as e:
        raise PretrainedError(
            f"{hub}: a gated repo; accept its terms on huggingface.co and log in (`hf auth login`)"
        ) from e
    except RepositoryNotFoundError as e:
        raise PretrainedError(
            f"{hub}: no such model repo on the Hugging Face Hub (or a private one: log in with `hf auth login` "
            "or set HF_TOKEN)"
        ) from e
    except RevisionNotFoundError as e:
        raise PretrainedError(f"{hub}: revision {hub.revision!r} does not exist in {hub.repo_id}") from e
    except EntryNotFoundError as e:
        raise PretrainedError(f"{hub}: {args[1] if len(args) > 1 else 'the file'} is not in {hub.repo_id}") from e
    except HFValidationError as e:
        raise PretrainedError(f"{hub}: {_first_line(e)}") from e
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise PretrainedError(f"{hub}: download failed ({type(e).__name__}: {_first_line(e)})") from e


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# -- sha256 ----------------------------------------------------------------------------------------------
_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """The file's sha256, computed once per process for an unchanged file (path, size, mtime)."""
    real = os.path.realpath(path)
    st = os.stat(real)
    key = (real, st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        start = time.perf_counter()
        h = hashlib.sha256()
        with open(real, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _HASHES[key] = h.hexdigest()
        log.info("sha256 of %s: %s (%.1f s)", path, _HASHES[key], time.perf_counter() - start)
    return _HASHES[key]


def verify_sha256(path: Path, expected: str, *, what: str) -> None:
    """Raise naming the file, both hashes and ``what`` the expected one is, if they differ."""
    actual = file_sha256(path)
    if actual != expected.lower():
        raise PretrainedError(
            f"{path}: sha256 {actual} does not match {expected} ({what}); the file is truncated, corrupt or another "
            "release: delete it and download it again"
        )


def verify_hub_blob(path: Path) -> None:
    """A hub-cached file whose blob is named by a sha256 (Git LFS files) must hash to that name."""
    blob = Path(os.path.realpath(path)).name
    if _SHA256.fullmatch(blob):
        verify_sha256(path, blob, what="the Hugging Face Hub's LFS sha256, the name of its cache blob")


def _checksums_file() -> Path:
    return weights_dir() / "checksums.json"


def _recorded(key: str) -> str | None:
    try:
        return json.loads(_checksums_file().read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None


def _record(key: str, sha: str) -> None:
    file = _checksums_file()
    try:
        data = json.loads(file.read_text()) if file.is_file() else {}
        data[key] = sha
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        log.info("recorded sha256 %s of %s in %s (no published hash to check it against)", sha, key, file)
    except (OSError, ValueError) as e:
        log.warning("could not record sha256 of %s in %s: %s", key, file, e)


def verify_source(path: Path, source: catalog.Source, entry: catalog.Checkpoint) -> None:
    """Check a catalog source's weights file against its published sha256 (or prefix); without one,
    against the hash recorded at first use (recording it now if this is the first use)."""
    file = path / source.file if path.is_dir() and source.file else path
    if not file.is_file():
        return  # the folder holds other weights than the catalog names (e.g. a safetensors conversion)
    if source.sha256:
        verify_sha256(file, source.sha256, what=f"catalog entry {entry.name}: {source.sha256_source}")
        return
    actual = file_sha256(file)
    if source.sha256_prefix and not actual.startswith(source.sha256_prefix):
        raise PretrainedError(
            f"{file}: sha256 {actual} does not start with {source.sha256_prefix} (catalog entry {entry.name}: "
            f"{source.sha256_source}); delete it and download it again"
        )
    key = f"{entry.name}:{source.location}"
    seen = _recorded(key)
    if seen is None:
        _record(key, actual)
    elif seen != actual:
        log.warning(
            "%s: sha256 %s differs from %s recorded at its first use (%s): the source now serves another file",
            file, actual, seen, _checksums_file(),
        )  # fmt: skip


# -- catalog entries -------------------------------------------------------------------------------------
def fetch_checkpoint(entry: catalog.Checkpoint) -> Path:
    """A local path for a catalog checkpoint: a copy in ``$VT_WEIGHTS_DIR`` (file name of a source, or a
    folder named after the entry), else its hub sources through the cache; checked against its sha256.
    Fails with one line saying what to download and where to put it."""
    readable = entry.readable_sources
    if not readable:
        where = "; ".join(f"{s.location} ({s.status}, {_layout(s)})" for s in entry.sources)
        raise PretrainedError(f"{entry.name}: this suite reads none of its sources' formats: {where}")
    for s in readable:
        local = weights_dir() / (entry.name if s.kind == "hf-folder" else s.filename)
        if local.is_file() or (local / "config.json").is_file():
            verify_source(local, s, entry)
            return local
    unavailable: list[HubUnavailableError] = []
    for s in readable:
        if s.hub_id is None:
            continue
        try:
            path = fetch(parse_hub_id(s.hub_id), weights_file=s.file if s.kind == "hf-folder" else None)
        except HubUnavailableError as e:
            unavailable.append(e)
            continue
        verify_source(path, s, entry)
        return path
    ways = [f"`{e.command}` (then copy the cache folder {e.hub.cache_folder})" for e in unavailable]
    ways += [
        f"download {s.location} to {weights_dir() / s.filename}" for s in readable if s.kind == "url"
    ]  # fmt: skip
    reason = unavailable[0].reason if unavailable else "no hub source"
    raise PretrainedError(
        f"{entry.name}: not in {weights_dir()} nor the Hugging Face cache ({hub_cache()}), and {reason}; get it "
        f"with {' or '.join(ways)}"
    )


def _layout(s: catalog.Source) -> str:
    return f"read by {s.format}" if s.format else "a layout this suite does not read"


__all__ = [
    "HUB_PREFIX",
    "HubId",
    "HubUnavailableError",
    "fetch",
    "fetch_checkpoint",
    "file_sha256",
    "hub_cache",
    "parse_hub_id",
    "resolve_source",
    "verify_sha256",
    "weights_dir",
]
