"""How ``vt`` reads its command line and config files: a config may build on others (``base:``), keys are
checked without argparse's prefix matching, and errors are one line naming the key and the closest valid one."""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ActionConfigFile
from lightning.pytorch.cli import LightningArgumentParser


class ConfigFile(ActionConfigFile):
    """``--config FILE``: FILE's ``base`` configs (a path or a list, relative to FILE) first, then FILE."""

    def __call__(self, parser, cfg, values, option_string=None):  # noqa: ANN001, ANN204 (argparse signature)
        self._apply(parser, cfg, str(values), ())

    def _apply(self, parser, cfg, value: str, chain: tuple[Path, ...]) -> None:  # noqa: ANN001 (jsonargparse)
        path = Path(value)
        loaded = yaml.safe_load(path.read_text()) if path.is_file() else None
        bases = loaded.get("base") if isinstance(loaded, dict) else None
        for base in [bases] if isinstance(bases, str) else bases or []:
            if (path.parent / base).resolve() in chain + (path.resolve(),):
                raise TypeError(f"{path}: base {base} is a config that builds on this one (a cycle)")
            self._apply(parser, cfg, str(path.parent / base), chain + (path.resolve(),))
        self.apply_config(parser, cfg, self.dest, value)
        if "base" in cfg:
            cfg["base"] = None  # applied: a saved or printed config is complete without it


class VideoTransformersParser(LightningArgumentParser):
    """jsonargparse's parser without argparse's prefix matching (``--data.num_frame`` is not ``num_frames``),
    whose errors are one line naming the key and the closest valid one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> None:  # noqa: D102
        if not self.exit_on_error:
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        message = suggest(message, parser)
        prog = parser.prog.replace(" [options]", "")
        sys.stderr.write(f"{prog}: error: {message}\n(`{prog} --help` lists every option)\n")
        sys.exit(2)


def suggest(message: str, parser: LightningArgumentParser) -> str:
    """``message`` with "did you mean ..." for each unknown option or key it names."""
    options = [f"--{key}" for key in parser.get_defaults().keys()]
    unknown = re.findall(r"(--[\w.\-]+)", message) if "unrecognized arguments" in message else []
    for group, key in re.findall(r"(?:Group '([\w.]+)' )?does not accept (?:nested key|option) '([\w.]+)'", message):
        unknown.append(f"--{group}.{key}" if group else f"--{key}")
    hints = []
    for option in unknown:
        close = difflib.get_close_matches(option, options, n=1, cutoff=0.6)
        if close and close[0] != option:
            hints.append(f"{option}: did you mean {close[0]}?")
    return message + ("; " + "; ".join(hints) if hints else "")
