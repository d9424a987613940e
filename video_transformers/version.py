"""The package version, in one place (``pyproject.toml`` reads it; ``hf_folder`` records it)."""

__version__ = "0.1.0"
