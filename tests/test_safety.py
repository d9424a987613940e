"""Untrusted checkpoints and absurd sizes (issue 9): code-running pickles are refused by every loader,
metadata with wrong types names its key, and absurd sizes fail before anything large is allocated."""

from __future__ import annotations

import json
import os
import time
import tracemalloc
from pathlib import Path

import pytest
import torch

from video_transformers.models import create_model, get_entry, list_models
from video_transformers.pretrained import PretrainedError, from_pretrained, load_state_dict_file
from video_transformers.safety.checkpoints import UntrustedCheckpointError, safe_torch_load
from video_transformers.safety.limits import SizeError, check_model_kwargs
from video_transformers.safety.metadata import (
    MetadataError,
    validate_class_names,
    validate_hf_config,
    validate_hparams,
    validate_mean_std,
)


class _RunsCode:
    """Unpickling this runs ``os.system("touch <marker>")``: what a hostile checkpoint carries."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil_checkpoint(path: Path, marker: Path, **extra) -> Path:
    torch.save({"state_dict": {"w": torch.zeros(2)}, "payload": _RunsCode(marker), **extra}, path)
    return path


def test_payload_really_runs_code_when_fully_unpickled(tmp_path):
    """Guard for the tests below: the crafted file does run code under plain torch.load."""
    marker = tmp_path / "ran"
    path = _evil_checkpoint(tmp_path / "evil.pt", marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_load_state_dict_file_refuses_code_and_says_how_to_trust(tmp_path):
    marker = tmp_path / "ran"
    path = _evil_checkpoint(tmp_path / "evil.pth", marker)
    with pytest.raises(PretrainedError, match=r"evil\.pth: refused to unpickle.*trust=True.*--trust_checkpoint true"):
        load_state_dict_file(path)
    with pytest.raises(UntrustedCheckpointError):
        safe_torch_load(path)
    assert not marker.exists()


def test_trust_allows_non_tensor_objects(tmp_path):
    """Official releases hold objects such as config namespaces: only trust=True reads them."""
    import argparse

    path = tmp_path / "release.pyth"
    torch.save({"model_state": {"w": torch.ones(1)}, "cfg": argparse.Namespace(frames=8)}, path)
    with pytest.raises(PretrainedError, match="refused to unpickle"):
        load_state_dict_file(path)
    assert load_state_dict_file(path, trust=True)["cfg"].frames == 8


def test_corrupt_file_is_reported_not_retried_unpickled(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"w": torch.zeros(100)}, good)
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(good.read_bytes()[:200])
    with pytest.raises(PretrainedError, match=r"truncated\.pt: cannot read the checkpoint \(corrupt or truncated"):
        load_state_dict_file(bad, trust=True)
    bad_st = tmp_path / "bad.safetensors"
    bad_st.write_bytes(b"\xff" * 64)
    with pytest.raises(PretrainedError, match=r"bad\.safetensors: cannot read safetensors"):
        load_state_dict_file(bad_st)
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(PretrainedError, match="expected a dict"):
        load_state_dict_file(listed)


def test_from_pretrained_refuses_code(tmp_path):
    """Detected as an official UniFormerV2 file by its name; the loader reads it through safe loading."""
    marker = tmp_path / "ran"
    path = _evil_checkpoint(tmp_path / "k400_uniformerv2_b16_8x224.pyth", marker)
    with pytest.raises(PretrainedError, match="refused to unpickle.*trust"):
        from_pretrained(path)
    with pytest.raises(PretrainedError, match="refused to unpickle"):
        from_pretrained(path, format="timesformer_official")
    assert not marker.exists()


def _hf_vivit_folder(tmp_path: Path, **config) -> Path:
    folder = tmp_path / "hf"
    folder.mkdir()
    base = dict(
        model_type="vivit",
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        image_size=32,
        num_frames=4,
        tubelet_size=[2, 8, 8],
        num_channels=3,
        id2label={"0": "a", "1": "b"},
    )
    (folder / "config.json").write_text(json.dumps({**base, **config}))
    return folder


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"hidden_size": "64"}, "hidden_size must be an integer"),
        ({"id2label": ["a", "b"]}, "id2label must be an object"),
        ({"id2label": {"0": "a", "2": "b"}}, r"id2label keys must be 0\.\.1"),
        ({"id2label": {"0": 5}}, "id2label entry '0'"),
        ({"hidden_size": 10_000_000}, r"embed_dim=10000000: expected 1 <= embed_dim <= 16,384"),
        ({"num_frames": 1_000_000}, "num_frames=1000000"),
    ],
)
def test_from_pretrained_validates_config_before_building(tmp_path, config, message):
    folder = _hf_vivit_folder(tmp_path, **config)
    with pytest.raises(MetadataError, match=message):
        from_pretrained(folder)


def test_preprocessor_mean_std_validated(tmp_path):
    folder = _hf_vivit_folder(tmp_path)
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5, 0.5], "image_std": [0.5] * 3}))
    with pytest.raises(MetadataError, match=r"preprocessor_config\.json: mean must be 3 finite numbers"):
        from_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.5, 0, 0.5]}))
    with pytest.raises(MetadataError, match="std must be > 0"):
        from_pretrained(folder)


def test_metadata_validators_name_the_key():
    with pytest.raises(MetadataError, match=r"hyper_parameters\['num_classes'\] must be int, got str"):
        validate_hparams({"num_classes": "12"}, where="x.ckpt")
    with pytest.raises(MetadataError, match=r"class_names'\]: 2 names for 3 classes"):
        validate_hparams({"num_classes": 3, "class_names": ["a", "b"]}, where="x.ckpt")
    with pytest.raises(MetadataError, match=r"class_names\[1\]: expected a non-empty string"):
        validate_class_names(["a", 7])
    with pytest.raises(MetadataError, match="duplicated class names"):
        validate_class_names(["a", "a"])
    with pytest.raises(MetadataError, match=r"embed_dim=10000000"):
        validate_hparams({"backbone": "vivit_base_factorised_encoder_16x2", "backbone_kwargs": {"embed_dim": 10**7}})
    with pytest.raises(MetadataError, match="mean must be 3 finite numbers"):
        validate_mean_std([0.5, float("nan"), 0.5], [1, 1, 1])
    with pytest.raises(MetadataError, match="tubelet_size must be an integer or a list"):
        validate_hf_config({"tubelet_size": "2x16x16"})
    ok = {"backbone": "vivit_base_factorised_encoder_16x2", "num_classes": 2, "class_names": ["a", "b"], "img_size": 32}
    assert validate_hparams(ok) == ok
    assert validate_mean_std(torch.tensor([0.5, 0.5, 0.5]), (0.2, 0.2, 0.2)) == ((0.5,) * 3, (0.2,) * 3)


# -- size limits ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list_models())
def test_paper_sizes_pass_the_limits(name):
    entry = get_entry(name)
    check_model_kwargs(name, entry.defaults)  # TimeSformer-L 96x224 and UniFormerV2 L/14@336 32f included


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_frames": 10**6}, r"num_frames=1000000: expected 1 <= num_frames <= 4,096"),
        ({"img_size": 10**5}, r"img_size=100000: expected 1 <= img_size <= 4,096"),
        ({"embed_dim": 10**7}, r"embed_dim=10000000"),
        ({"embed_dim": -8}, r"embed_dim=-8"),
        ({"depth": 1000, "embed_dim": 8192}, r"B parameters .*the limit is 4\.0B"),
        ({"num_frames": 2048, "img_size": 1024, "patch_size": 8}, r"tokens per clip; the limit is 1,048,576"),
        ({"num_frames": "8"}, "num_frames='8': expected an integer"),
    ],
)
def test_absurd_model_sizes_fail_before_allocation(overrides, message):
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(SizeError, match=message):
            create_model("timesformer_base_divided_8x224", num_classes=10, **overrides)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 1.0 and peak < 10 << 20  # nothing model-sized was built


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"local_kernel": 10**6}, r"local_kernel=1000000: expected 0 <= local_kernel <= 4,096"),
        ({"num_registers": 10**7}, r"num_registers=10000000"),  # an argument no table lists
        ({"global_layers": [0, 10**6]}, r"global_layers=1000000"),
        ({"fusion_depth": 5000}, r"fusion_depth=5000: expected 0 <= fusion_depth <= 1,024"),
        ({"depth": 12, "fusion_depth": 1000, "embed_dim": 4096}, r"B parameters"),  # every *_depth counts
        ({"adapter_ratio": float("nan")}, r"adapter_ratio=nan: expected a number in \(0, 64\]"),
        ({"init_scale": float("inf")}, r"init_scale=inf: expected a finite number"),
    ],
)
def test_every_model_argument_is_checked_by_name_and_type(kwargs, message):
    """A size argument a model adds later needs no entry in safety/limits.py to be bounded."""
    with pytest.raises(SizeError, match=message):
        check_model_kwargs("m", kwargs)


def test_tiny_models_still_build():
    model = create_model("timesformer_base_divided_8x224", **get_entry("timesformer_base_divided_8x224").tiny)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_vt_test_refuses_code_running_checkpoint(tmp_path, monkeypatch):
    """``vt test --ckpt_path`` reads the file (for its hyper-parameters) weights-only, before building anything."""
    from tests.conftest import REPO
    from video_transformers.cli import run_cli

    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "ran"
    path = _evil_checkpoint(tmp_path / "evil.ckpt", marker, hyper_parameters={"num_classes": 12})
    config = str(REPO / "configs" / "vivit_factorised.yaml")
    with pytest.raises(UntrustedCheckpointError, match=r"evil\.ckpt: refused to unpickle.*--trust_checkpoint true"):
        run_cli(["test", "--config", config, "--ckpt_path", str(path)])
    assert not marker.exists()
    bad = tmp_path / "bad_meta.ckpt"
    torch.save({"hyper_parameters": {"num_classes": 2, "class_names": ["a", 3]}, "state_dict": {}}, bad)
    with pytest.raises(MetadataError, match=r"bad_meta\.ckpt: hyper_parameters\['class_names'\]\[1\]"):
        run_cli(["test", "--config", config, "--ckpt_path", str(bad)])
