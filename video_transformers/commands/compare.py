"""``vt compare``: two test reports side by side, every differing field flagged.

    vt compare runs/a runs/b                   # run folders (their test_report.json), or the report files
    vt compare a/test_report.json b/test_report.json --diff   # only the fields that differ

The first thing to run when two numbers disagree: views, sampler, crop, normalisation, decoder, precision,
dataset manifest (how many videos, which annotation files), checkpoint and package versions. Exit status: 0 when
the reports agree (``created`` and ``command`` are shown but not compared), 1 when a field differs, 2 when a
report cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from video_transformers.lit.test_report import REPORT

NOT_COMPARED = ("created", "command")
WIDTH = 36
KEY_WIDTH = 48


def find_report(path: Path) -> Path:
    """``path`` itself, ``path/test_report.json``, or the newest ``test_report.json`` under ``path``."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such report or run folder")
    if (path / REPORT).is_file():
        return path / REPORT
    found = sorted(path.rglob(REPORT), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"{path}: no {REPORT} in this folder or below (vt test writes it)")
    if len(found) > 1:
        print(f"{path}: {len(found)} reports below; using the newest, {found[-1]}")
    return found[-1]


def load(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable JSON report ({e})") from e
    if not isinstance(report, dict):
        raise ValueError(f"{path}: expected a JSON object (a vt test report)")
    return report


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out |= flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def clip(text: str, width: int) -> str:
    """``text`` shortened in the middle to ``width`` characters."""
    return text if len(text) <= width else text[: (width - 3) // 2] + "..." + text[-(width - 3 - (width - 3) // 2) :]


def show(value: Any) -> str:  # noqa: ANN401
    if isinstance(value, list) and (len(value) > 4 or any(isinstance(v, dict | list) for v in value)):
        return f"[{len(value)} entries]"
    return clip("-" if value is None else value if isinstance(value, str) else json.dumps(value), WIDTH)


def list_difference(a: Any, b: Any, limit: int = 5) -> list[str]:  # noqa: ANN401
    """For two lists: the entries only in one of them (at most ``limit`` of each)."""
    if not (isinstance(a, list) and isinstance(b, list)):
        return []
    ka, kb = [json.dumps(x, sort_keys=True) for x in a], [json.dumps(x, sort_keys=True) for x in b]
    lines = []
    for side, mine, other in (("A", ka, set(kb)), ("B", kb, set(ka))):
        only = [x for x in mine if x not in other]
        lines += [f"      only in {side}: {x}" for x in only[:limit]]
        if len(only) > limit:
            lines.append(f"      ... and {len(only) - limit} more only in {side}")
    return lines


def compare(a: dict[str, Any], b: dict[str, Any], *, only_diff: bool = False) -> tuple[list[str], list[str]]:
    """Table lines and the differing keys."""
    fa, fb = flatten(a), flatten(b)
    keys = list(fa) + [k for k in fb if k not in fa]
    differ = [k for k in keys if fa.get(k) != fb.get(k) and k.split(".")[0] not in NOT_COMPARED]
    shown = differ if only_diff else keys
    width = min(max((len(k) for k in shown), default=5), KEY_WIDTH)
    lines = [f"  {'field':<{width}}  {'A':<{WIDTH}}  B", f"  {'-' * width}  {'-' * WIDTH}  {'-' * WIDTH}"]
    for key in shown:
        va, vb = fa.get(key), fb.get(key)
        mark = "!" if key in differ else " "
        sa = show(va) if key in fa else "(absent)"
        sb = show(vb) if key in fb else "(absent)"
        lines.append(f"{mark} {clip(key, width):<{width}}  {sa:<{WIDTH}}  {sb}")
        if key in differ:
            lines += list_difference(va, vb)
    return lines, differ


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vt compare", description=__doc__.split("\n\n")[0])
    p.add_argument("a", type=Path, help="a test_report.json or a run folder holding one")
    p.add_argument("b", type=Path, help="the other")
    p.add_argument("--diff", action="store_true", help="show only the fields that differ")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        pa, pb = find_report(args.a), find_report(args.b)
        a, b = load(pa), load(pb)
    except (FileNotFoundError, ValueError) as e:
        print(f"vt compare: {e}", file=sys.stderr)
        return 2
    lines, differ = compare(a, b, only_diff=args.diff)
    print(f"A: {pa}\nB: {pb}")
    print("\n".join(lines))
    if differ:
        print(f"{len(differ)} fields differ (marked !): {', '.join(differ)}")
        return 1
    print("the reports agree on every compared field")
    return 0


if __name__ == "__main__":
    sys.exit(main())
