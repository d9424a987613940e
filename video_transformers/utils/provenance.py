"""Where a result came from: file checksums, package versions and the source tree's git commit."""

from __future__ import annotations

import hashlib
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "video-transformers",
    "torch",
    "torchvision",
    "lightning",
    "torchmetrics",
    "pytorchvideo",
    "av",
    "numpy",
    "einops",
    "timm",
    "transformers",
    "huggingface_hub",
    "safetensors",
    "decord",
    "torchcodec",
    "wandb",
)


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that shape a result (absent ones left out), and Python's."""
    versions = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_state(path: str | Path | None = None) -> dict[str, str | bool] | None:
    """``{"commit", "dirty"}`` of the git checkout holding ``path`` (default: this package's source), or ``None``
    when it is not in one (an installed wheel) or git is unavailable."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())} if commit else None


__all__ = ["file_sha256", "git_state", "package_versions", "text_sha256"]
