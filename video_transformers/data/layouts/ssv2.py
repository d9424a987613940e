"""Something-Something v2 (Goyal et al. 2017), ``data.dataset: ssv2``.

Layout, as distributed::

    root/
      labels.json                    {"Approaching something with your camera": "0", ...}: 174 templates
      train.json, validation.json    [{"id": "78687", "template": "Holding [something] next to [something]", ...}]
      20bn-something-something-v2/<id>.webm     (or videos/<id>.webm; .mp4 after `vt data resize` is found too)

The class of an entry is its ``template`` with the brackets of the placeholders removed ("Holding [something]
next to [something]" -> "Holding something next to something"), which is how ``labels.json`` spells it.
``test.json`` carries no labels, so evaluation uses ``validation.json`` (``data.test_split: val``).

Many classes are direction-sensitive ("Pushing something from left to right"): horizontal flips are off by
default, or pair the mirrored classes with ``data.hflip_label_pairs`` (:data:`LEFT_RIGHT_PAIRS`).
"""

from __future__ import annotations

import json
from pathlib import Path

from video_transformers.data.annotations import Annotations, VideoRecord, class_index, read_text
from video_transformers.data.errors import VideoDataError
from video_transformers.data.layouts import Format

SPLIT_FILES = {"train": "train.json", "val": "validation.json", "test": "test.json"}
VIDEO_DIRS = ("20bn-something-something-v2", "videos", ".")
EXTENSIONS = (".webm", ".mp4")
LEFT_RIGHT_PAIRS = [
    ["Pushing something from left to right", "Pushing something from right to left"],
    ["Pulling something from left to right", "Pulling something from right to left"],
    ["Turning the camera left while filming something", "Turning the camera right while filming something"],
]


def normalise_template(template: str) -> str:
    return template.replace("[", "").replace("]", "").strip()


def _load(path: Path):  # noqa: ANN202
    if not path.is_file():
        raise VideoDataError(f"{path}: annotation file not found", kind="annotation")
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise VideoDataError(f"{path}: not valid JSON ({e})", kind="annotation") from e


def class_names(root: Path) -> list[str]:
    path = root / "labels.json"
    labels = _load(path)
    if not isinstance(labels, dict) or not labels:
        raise VideoDataError(f"{path}: expected a non-empty {{template: index}} object", kind="annotation")
    try:
        by_index = {int(v): normalise_template(k) for k, v in labels.items()}
    except (TypeError, ValueError) as e:
        raise VideoDataError(f"{path}: indices must be integers ({e})", kind="annotation") from e
    if sorted(by_index) != list(range(len(labels))):
        raise VideoDataError(f"{path}: indices must be 0..{len(labels) - 1} without gaps or repeats", kind="annotation")
    return [by_index[i] for i in range(len(labels))]


def read_split(root: Path, split: str, names: list[str]) -> Annotations:
    path = root / SPLIT_FILES.get(split, f"{split}.json")
    entries = _load(path)
    if not isinstance(entries, list):
        raise VideoDataError(f"{path}: expected a JSON list of {{id, template}} entries", kind="annotation")
    video_dir = next((root / d for d in VIDEO_DIRS if (root / d).is_dir() and any((root / d).glob("*.webm"))), None)
    video_dir = video_dir or next((root / d for d in VIDEO_DIRS if (root / d).is_dir()), root)
    index = class_index(names)
    out = Annotations()
    for n, entry in enumerate(entries):
        where = f"{path}[{n}]"
        if not isinstance(entry, dict) or "id" not in entry:
            out.problems.append(f"{where}: expected an object with 'id' and 'template'; got {entry!r:.80}")
            continue
        if "template" not in entry:
            out.problems.append(
                f"{where}: entry {entry['id']!r} has no 'template' (test.json is unlabelled: set data.test_split: val)"
            )
            continue
        label = normalise_template(str(entry["template"]))
        if label not in index:
            out.problems.append(f"{where}: template {label!r} of id {entry['id']!r} is not in labels.json")
            continue
        vid = str(entry["id"])
        candidates = [video_dir / (vid + ext) for ext in EXTENSIONS]
        video = next((p for p in candidates if p.is_file()), candidates[0])
        out.records.append(VideoRecord(video, index[label], f"{where} (id {vid})", vid))
    return out.raise_if_empty(path)


LAYOUTS = {"ssv2": lambda split_id: Format(class_names, read_split, num_classes=174)}
