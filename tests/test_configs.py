"""Every YAML directly under configs/ parses with the ``vt`` parser and its model and data module instantiate.

Paper-sized configs cannot run tiny, so the classes are instantiated on the meta device (shapes, no storage).
The data module is pointed at a temporary root holding only ``classes.txt``: its ``__init__`` reads nothing
else, so no video is listed or decoded. The Trainer is not instantiated: configs name GPU accelerators and
mixed precision this machine may not have; its section is still parsed and type-checked by the parser.
"""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import REPO
from video_transformers.cli import VideoTransformersCLI, main
from video_transformers.data import VideoDataModule, synthetic
from video_transformers.lit import VideoClassifier

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
CLASSES = [f"class_{i}" for i in range(7)]


class _NoTrainerCLI(VideoTransformersCLI):
    def instantiate_trainer(self, **kwargs):  # noqa: ANN003, ANN201 (LightningCLI hook)
        return None


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("classes_only")
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return root


def test_there_are_configs():
    assert CONFIGS, "configs/ holds no YAML file"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_parses_and_instantiates_on_meta(path, data_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # loggers and checkpoint callbacks name directories relative to the cwd
    with torch.device("meta"):
        cli = _NoTrainerCLI(
            VideoClassifier,
            VideoDataModule,
            run=False,
            args=["--config", str(path), "--data.root", str(data_root)],
            parser_kwargs={"prog": "vt"},
        )
    model, data = cli.model.model, cli.datamodule
    expected_classes = len(synthetic.CLASS_NAMES) if data.dataset == "embedded" else len(CLASSES)
    assert data.num_classes == expected_classes
    assert model.num_classes == data.num_classes, f"{path.name}: data.num_classes is not linked to the model"
    assert (model.num_frames, model.img_size) == (data.num_frames, data.crop_size), f"{path.name}: sizes not linked"
    assert all(p.is_meta for p in model.parameters()), f"{path.name}: parameters were allocated"
    assert not list(tmp_path.iterdir()), f"{path.name}: instantiation wrote files"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_vt_info_reads_config(path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["info", "--config", str(path), "--format", "json"])
    captured = capsys.readouterr()
    assert e.value.code == 0, captured.err
    (row,) = json.loads(captured.out)
    import yaml

    data = yaml.safe_load(path.read_text())["data"]
    assert row["input"].startswith(f"{data['num_frames']}x{data['crop_size']}x")
    assert row["views"] == f"{data.get('test_clips', 4)}x{data.get('test_crops', 3)}"
    assert row["gflops_per_view"] > 0 and row["params_m"] > 0
