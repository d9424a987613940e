"""Weights by name (issue 16, part 1): Hugging Face Hub ids, ``hf-hub:`` strings, revision pins and catalog
names, resolved through ``huggingface_hub`` against a hub cache that each test builds in a temp dir.

No test reaches the network: :func:`offline_hub` points ``huggingface_hub`` at the temp cache and switches on
its offline mode (``HF_HUB_OFFLINE``). :func:`put_in_cache` writes files the way ``huggingface_hub`` stores
them (``models--org--name/{blobs,snapshots,refs}``, LFS blobs named by their sha256), and every test that
uses it checks the layout with ``huggingface_hub.scan_cache_dir``, so the cache is one the library reads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path

import huggingface_hub
import pytest
import torch

import video_transformers
from video_transformers.inference import load_model
from video_transformers.inference.export import export_hf
from video_transformers.models import create_model, get_entry, list_models
from video_transformers.pretrained import PretrainedError, catalog, list_formats
from video_transformers.pretrained.hub import HubId, parse_hub_id, resolve_source
from video_transformers.pretrained.lightning_ckpt import build_recorded

COMMIT_A, COMMIT_B = "a" * 40, "b" * 40
NAME = "vivit_base_factorised_encoder_16x2"  # the family with the most distinct blocks; any would do


# -- a hub cache in a temp dir ----------------------------------------------------------------------------
@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hub cache that ``huggingface_hub`` uses, offline; ``$VT_WEIGHTS_DIR`` in the temp dir too."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("VT_WEIGHTS_DIR", str(tmp_path / "weights"))
    return cache


def put_in_cache(cache: Path, repo_id: str, files: dict[str, Path | bytes], commit: str, refs=("main",)) -> Path:
    """Write ``files`` (path in repo -> source file or bytes) as commit ``commit`` of model repo ``repo_id``
    in ``huggingface_hub``'s cache layout; ``refs`` (branches / tags) point at the commit. Weights files
    are LFS blobs (named by sha256), others git blobs (named by git's sha1), as the Hub stores them."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for rel, data in files.items():
        content = data if isinstance(data, bytes) else Path(data).read_bytes()
        if rel.endswith((".safetensors", ".bin", ".pyth", ".pth", ".ckpt")):
            blob_name = hashlib.sha256(content).hexdigest()
        else:
            blob_name = hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
        blob = repo / "blobs" / blob_name
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(content)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snapshot


def assert_cache_is_valid(cache: Path, repo_id: str, commits: set[str]) -> None:
    """``huggingface_hub``'s own scanner reads the layout: the repo, its commits, no warnings."""
    info = huggingface_hub.scan_cache_dir(cache)
    assert not info.warnings, info.warnings
    repo = next(r for r in info.repos if r.repo_id == repo_id)
    assert {r.commit_hash for r in repo.revisions} == commits


def tiny(name: str = NAME, seed: int = 0, **overrides):
    """A tiny registered model with random weights, and its recorded constructor call."""
    torch.manual_seed(seed)
    return build_recorded(lambda: create_model(name, **{**get_entry(name).tiny, "num_classes": 5, **overrides}))


def exported(tmp: Path, name: str = NAME, seed: int = 0, **overrides) -> tuple[torch.nn.Module, Path]:
    model, spec = tiny(name, seed, **overrides)
    model.class_names = [f"c{i}" for i in range(model.num_classes)]
    folder = export_hf(model.eval(), spec, tmp / f"{name}-{seed}")
    return model, folder


def folder_files(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in folder.iterdir()}


def clip_for(model: torch.nn.Module) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 3, model.num_frames, model.img_size, model.img_size, generator=g)


def same_logits(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    x = clip_for(a)
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


# -- parsing ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("facebook/timesformer-base-finetuned-k400", HubId("facebook/timesformer-base-finetuned-k400")),
        ("hf-hub:facebook/timesformer-base-finetuned-k400", HubId("facebook/timesformer-base-finetuned-k400")),
        ("org/name@v1.0", HubId("org/name", "v1.0")),
        ("hf-hub:org/name@" + COMMIT_A, HubId("org/name", COMMIT_A)),
        ("org/name@refs%2Fpr%2F3", HubId("org/name", "refs/pr/3")),  # HfFileSystem's encoding of a PR ref
        ("hf-hub:org/name/k400/model.pyth", HubId("org/name", None, "k400/model.pyth")),
        ("hf-hub:org/name@main/model.pyth", HubId("org/name", "main", "model.pyth")),
        ("runs/best.ckpt", None),  # a checkpoint file name: a local path, never a repo
        ("runs/x/checkpoints", None),  # three parts: a path (bare ids name a repo, not a file)
        ("./org/name", None),
        ("~/org/name", None),
        ("model", None),
    ],
)
def test_parse_hub_id(text: str, expected: HubId | None) -> None:
    assert parse_hub_id(text) == expected


def test_malformed_prefixed_ids_name_the_problem() -> None:
    with pytest.raises(PretrainedError, match="expected hf-hub:<org>/<name>"):
        parse_hub_id("hf-hub:just-a-name")
    with pytest.raises(PretrainedError, match="hf-hub:org/na--me"):
        parse_hub_id("hf-hub:org/na--me")  # huggingface_hub's validate_repo_id refuses '--'
    with pytest.raises(PretrainedError, match="empty revision"):
        parse_hub_id("hf-hub:org/name@")


# -- from_pretrained through the hub cache -------------------------------------------------------------------
def test_hub_id_of_an_exported_model_loads_offline_from_the_cache(offline_hub: Path, tmp_path: Path) -> None:
    model, folder = exported(tmp_path)
    snapshot = put_in_cache(offline_hub, "someone/tiny-vivit", folder_files(folder), COMMIT_A)
    assert_cache_is_valid(offline_hub, "someone/tiny-vivit", {COMMIT_A})
    for source in ("someone/tiny-vivit", "hf-hub:someone/tiny-vivit", f"hf-hub:someone/tiny-vivit@{COMMIT_A}"):
        loaded = video_transformers.from_pretrained(source)
        assert same_logits(model, loaded), source
        assert loaded.class_names == model.class_names and not loaded.training
    assert resolve_source("someone/tiny-vivit") == snapshot  # read in place from the cache


def test_a_local_folder_of_the_same_name_wins(offline_hub: Path, tmp_path: Path, monkeypatch) -> None:
    model, folder = exported(tmp_path)
    other, other_folder = exported(tmp_path, seed=1)
    put_in_cache(offline_hub, "someone/tiny-vivit", folder_files(folder), COMMIT_A)
    local = tmp_path / "cwd" / "someone" / "tiny-vivit"
    local.parent.mkdir(parents=True)
    other_folder.rename(local)
    monkeypatch.chdir(tmp_path / "cwd")
    assert same_logits(other, video_transformers.from_pretrained("someone/tiny-vivit"))  # as transformers does
    assert same_logits(model, video_transformers.from_pretrained("hf-hub:someone/tiny-vivit"))  # explicit: hub


def test_revision_pins_select_the_commit(offline_hub: Path, tmp_path: Path) -> None:
    model_a, folder_a = exported(tmp_path, seed=0)
    model_b, folder_b = exported(tmp_path, seed=1)
    put_in_cache(offline_hub, "someone/tiny-vivit", folder_files(folder_a), COMMIT_A, refs=("main",))
    put_in_cache(offline_hub, "someone/tiny-vivit", folder_files(folder_b), COMMIT_B, refs=("v2", "refs/pr/1"))
    assert_cache_is_valid(offline_hub, "someone/tiny-vivit", {COMMIT_A, COMMIT_B})
    load = video_transformers.from_pretrained
    assert same_logits(model_a, load("someone/tiny-vivit"))  # main
    assert same_logits(model_b, load("someone/tiny-vivit@v2"))  # a tag
    assert same_logits(model_b, load(f"hf-hub:someone/tiny-vivit@{COMMIT_B}"))  # a commit
    assert same_logits(model_b, load("someone/tiny-vivit@refs%2Fpr%2F1"))  # a PR ref
    assert not same_logits(model_a, model_b)
    with pytest.raises(PretrainedError) as e:
        load("someone/tiny-vivit@v3")
    assert "\n" not in str(e.value) and "--revision v3" in str(e.value)


def test_offline_without_the_files_one_line_says_what_to_download_and_where(offline_hub: Path) -> None:
    with pytest.raises(PretrainedError) as e:
        video_transformers.from_pretrained("facebook/timesformer-base-finetuned-k400")
    message = str(e.value)
    assert "\n" not in message
    assert "HF_HUB_OFFLINE=1" in message
    assert "`hf download facebook/timesformer-base-finetuned-k400`" in message
    assert str(offline_hub / "models--facebook--timesformer-base-finetuned-k400") in message


def test_a_file_inside_a_repo_loads_by_its_path(offline_hub: Path, tmp_path: Path) -> None:
    from tests.test_pretrained_integration import official_uniformerv2

    ref = official_uniformerv2(tmp_path / "k400_uniformerv2_tiny_8x32.pyth")
    files = {"k400/k400_uniformerv2_tiny_8x32.pyth": tmp_path / "k400_uniformerv2_tiny_8x32.pyth"}
    put_in_cache(offline_hub, "someone/uniformerv2", {**files, "README.md": b"weights\n"}, COMMIT_A)
    assert_cache_is_valid(offline_hub, "someone/uniformerv2", {COMMIT_A})
    loaded = video_transformers.from_pretrained("hf-hub:someone/uniformerv2/k400/k400_uniformerv2_tiny_8x32.pyth")
    assert same_logits(ref, loaded)
    with pytest.raises(PretrainedError, match="no config.json .* name one file of the repo"):
        video_transformers.from_pretrained("someone/uniformerv2")  # the repo is not a model folder


def test_a_corrupt_cached_blob_is_refused(offline_hub: Path, tmp_path: Path) -> None:
    _, folder = exported(tmp_path)
    snapshot = put_in_cache(offline_hub, "someone/tiny-vivit", folder_files(folder), COMMIT_A)
    blob = (snapshot / "model.safetensors").resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1  # one flipped bit in the last tensor
    blob.write_bytes(bytes(data))
    with pytest.raises(PretrainedError, match=rf"sha256 [0-9a-f]{{64}} does not match {blob.name}.*LFS sha256"):
        video_transformers.from_pretrained("someone/tiny-vivit")


# -- every place a checkpoint string is accepted --------------------------------------------------------------
def test_load_model_takes_a_hub_id_and_its_clip_settings(offline_hub: Path, tmp_path: Path) -> None:
    model, spec = tiny()
    clip = dict(num_frames=model.num_frames, sampling_rate=3, fps=12.5, crop_size=model.img_size, short_side=40,
                mean=(0.1, 0.2, 0.3), std=(0.3, 0.2, 0.1))  # fmt: skip
    folder = export_hf(model.eval(), spec, tmp_path / "out", clip=clip)
    put_in_cache(offline_hub, "someone/tiny-vivit", folder_files(folder), COMMIT_A)
    lm = load_model("hf-hub:someone/tiny-vivit")
    assert lm.source == "hf-hub:someone/tiny-vivit"
    # how the exported model cut its clips, not the generic defaults (a folder without data.sampling: time windows)
    assert lm.spec.to_dict() == {**clip, "sampling": "time"}
    assert same_logits(model, lm.model)


def test_init_from_a_hub_id_fine_tunes_onto_new_classes(offline_hub: Path, tmp_path: Path) -> None:
    from video_transformers.lit import VideoClassifier

    model, folder = exported(tmp_path)
    put_in_cache(offline_hub, "someone/tiny-vivit", folder_files(folder), COMMIT_A)
    lit = VideoClassifier(init_from="someone/tiny-vivit", num_classes=3)
    assert lit.model.num_classes == 3 and lit.backbone_spec["kwargs"]["num_classes"] == 3
    ours = {k: v for k, v in lit.model.state_dict().items() if not k.startswith("head.")}
    theirs = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)  # the backbone is the hub model's


def test_vt_predict_by_hub_id_equals_the_checkpoint_it_was_exported_from(
    offline_hub: Path, embedded_root: Path, tmp_path: Path, tmp_path_factory, capsys
) -> None:
    from tests.test_predict import make_checkpoint
    from video_transformers.commands.export import main as export
    from video_transformers.commands.predict import main as predict

    ckpt = make_checkpoint(embedded_root, tmp_path_factory.mktemp("ckpt"))
    assert export(["--ckpt_path", str(ckpt), "--format", "hf", "--out", str(tmp_path / "hf")]) == 0
    put_in_cache(offline_hub, "someone/tiny-fe", folder_files(tmp_path / "hf"), COMMIT_A)
    video = embedded_root / "videos/test/move_right_000.mp4"
    results = {}
    for source in (str(ckpt), "hf-hub:someone/tiny-fe"):
        out = tmp_path / f"{len(results)}.json"
        assert predict(["--ckpt_path", source, "--paths", str(video), "--views", "2x3", "--out", str(out)]) == 0
        results[source] = json.loads(out.read_text())
    a, b = results.values()
    assert a["predictions"] == b["predictions"] and a["clip"] == b["clip"]  # same clips, model, scores
    assert a["classes"] == b["classes"] and b["checkpoint"] == "hf-hub:someone/tiny-fe"


def test_vt_info_pretrained_lists_the_catalog_and_describes_a_source(offline_hub, tmp_path, capsys) -> None:
    from video_transformers.commands.info import main

    assert main(["--pretrained"]) == 0
    table = capsys.readouterr().out
    for name in catalog.CHECKPOINTS:
        assert f"`{name}`" in table
    assert main(["--pretrained", "uniformerv2_b16_k710_k400_8x224"]) == 0
    one = capsys.readouterr().out
    assert "743da61c97f6281bd11ef1d364c2101698c8e89ff7722ee957378e36ef344005" in one and "not cached" in one
    assert main(["--pretrained", "--format", "json"]) == 0
    assert {r["name"] for r in json.loads(capsys.readouterr().out)} == set(catalog.CHECKPOINTS)
    model, folder = exported(tmp_path)
    put_in_cache(offline_hub, "someone/tiny-vivit", folder_files(folder), COMMIT_A)
    assert main(["--pretrained", "hf-hub:someone/tiny-vivit"]) == 0
    text = capsys.readouterr().out
    assert "ViViTFactorisedEncoder" in text and "hf_video_transformers" in text and "params" in text
    assert main(["--pretrained", "someone/not-cached"]) == 2
    err = capsys.readouterr().err
    assert "hf download someone/not-cached" in err and err.count("\n") == 1


# -- the catalog ---------------------------------------------------------------------------------------------
def _entry(name: str, sources: list[catalog.Source]) -> catalog.Checkpoint:
    return catalog.Checkpoint(
        name=name, family="uniformerv2", model="uniformerv2_b16_8x224", dataset="none",
        pretraining="none", num_frames=8, img_size=32, mean=catalog.KINETICS_MEAN, std=catalog.KINETICS_STD,
        top1=None, views="1x1", top1_source="none", sources=tuple(sources),
    )  # fmt: skip


def test_catalog_name_resolves_checks_sha256_and_prefers_a_local_copy(offline_hub, tmp_path, monkeypatch, caplog):
    from tests.test_pretrained_integration import official_uniformerv2

    file = tmp_path / "k400_uniformerv2_tiny_8x32.pyth"
    ref = official_uniformerv2(file)
    sha = hashlib.sha256(file.read_bytes()).hexdigest()
    put_in_cache(offline_hub, "someone/uniformerv2", {file.name: file}, COMMIT_A)

    def source(**kw) -> catalog.Source:
        base = dict(kind="hf-file", location=f"someone/uniformerv2/{file.name}", format="uniformerv2_official",
                    status="served", checked="test", file=file.name, revision=COMMIT_A)  # fmt: skip
        return catalog.Source(**{**base, **kw})

    entries = {
        "good": _entry("good", [source(sha256=sha)]),
        "bad": _entry("bad", [source(sha256="0" * 64, sha256_source="a wrong hash")]),
        "unknown": _entry("unknown", [source()]),
    }
    monkeypatch.setattr(catalog, "CHECKPOINTS", {**catalog.CHECKPOINTS, **entries})
    assert same_logits(ref, video_transformers.from_pretrained("good"))
    with pytest.raises(PretrainedError, match=f"does not match {'0' * 64} .*a wrong hash"):
        video_transformers.from_pretrained("bad")
    # no published hash: recorded at first use, a different file later is reported
    assert same_logits(ref, video_transformers.from_pretrained("unknown"))
    record = json.loads((tmp_path / "weights" / "checksums.json").read_text())
    assert record == {f"unknown:someone/uniformerv2/{file.name}": sha}
    local = tmp_path / "weights" / file.name  # a copy in $VT_WEIGHTS_DIR comes first (no hub needed)
    state = torch.load(file, weights_only=True)
    state["backbone.transformer.proj.2.bias"] += 1.0  # another release of the "same" file
    torch.save(state, local)
    with caplog.at_level(logging.WARNING):
        loaded = video_transformers.from_pretrained("unknown")
    assert same_logits(video_transformers.from_pretrained(local), loaded) and not same_logits(ref, loaded)
    assert "differs from" in caplog.text and sha in caplog.text
    with pytest.raises(PretrainedError, match="does not match"):
        video_transformers.from_pretrained("good")  # the local copy is not the catalog's file


def test_catalog_name_without_any_copy_says_where_to_get_it(offline_hub, tmp_path, monkeypatch) -> None:
    entry = _entry("missing", [
        catalog.Source("url", "https://example.org/x/k400_uniformerv2_b16_8x224.pyth?dl=1", "uniformerv2_official",
                       "listed", "test"),
        catalog.Source("hf-file", "someone/uniformerv2/k400_uniformerv2_b16_8x224.pyth", "uniformerv2_official",
                       "served", "test", file="k400_uniformerv2_b16_8x224.pyth"),
        catalog.Source("url", "https://gone.example.org/x.pyth", "uniformerv2_official", "gone", "test"),
    ])  # fmt: skip
    monkeypatch.setattr(catalog, "CHECKPOINTS", {**catalog.CHECKPOINTS, "missing": entry})
    with pytest.raises(PretrainedError) as e:
        video_transformers.from_pretrained("missing")
    message = str(e.value)
    assert "\n" not in message and "HF_HUB_OFFLINE=1" in message
    assert "`hf download someone/uniformerv2 k400_uniformerv2_b16_8x224.pyth`" in message
    assert f"to {tmp_path / 'weights' / 'k400_uniformerv2_b16_8x224.pyth'}" in message
    assert "gone.example.org" not in message  # a dead source is not offered


def test_catalog_rows_are_complete_and_consistent() -> None:
    formats = set(list_formats())
    for name, c in catalog.CHECKPOINTS.items():
        assert c.model in list_models(), name
        assert c.num_frames > 0 and c.img_size > 0 and re.fullmatch(r"\d+x\d+", c.views), name
        assert len(c.mean) == len(c.std) == 3 and c.top1_source and c.normalisation_source, name
        assert c.sources, name
        for s in c.sources:
            assert s.checked.startswith(catalog.CHECKED), (name, s.location)
            assert s.format is None or s.format in formats, (name, s.format)
            assert s.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", s.sha256), (name, s.sha256)
            assert s.sha256_prefix is None or re.fullmatch(r"[0-9a-f]{8}", s.sha256_prefix), name
            assert (s.sha256 or s.sha256_prefix) is None or s.sha256_source, (name, "a hash needs its source")
            if s.kind == "url":
                assert s.location.startswith("https://"), name
            else:
                hub = parse_hub_id(s.hub_id)
                assert hub is not None and (hub.filename is None) == (s.kind == "hf-folder"), name
                assert s.revision is None or re.fullmatch(r"[0-9a-f]{40}", s.revision), name


def test_local_copies_of_catalog_sources_have_distinct_names() -> None:
    """Every downloadable file has its own name in $VT_WEIGHTS_DIR (scenic calls all of its files `checkpoint`)."""
    names = [(s.filename, s.location) for c in catalog.CHECKPOINTS.values() for s in c.sources if s.kind == "url"]
    by_name: dict[str, set[str]] = {}
    for name, location in names:
        by_name.setdefault(name, set()).add(location)
    assert {n: locs for n, locs in by_name.items() if len(locs) > 1} == {}


def test_scenic_catalog_entry_reads_its_local_copy(offline_hub, tmp_path, monkeypatch) -> None:
    """A scenic checkpoint put where the catalog says (its file name in $VT_WEIGHTS_DIR) loads by name."""
    fixture = Path(__file__).parent / "fixtures" / "scenic" / "m2_token.msgpack"  # a tiny ViViT-FE, scenic's layout
    entry = catalog.CHECKPOINTS["vivit_l16x2_fe_k400"]
    assert entry.model == "vivit_large_factorised_encoder_16x2" and entry.readable_sources[0].format == "scenic_vivit"
    local = tmp_path / "weights" / entry.readable_sources[0].filename
    local.parent.mkdir()
    local.write_bytes(fixture.read_bytes())
    model = video_transformers.from_pretrained("vivit_l16x2_fe_k400")
    assert same_logits(video_transformers.from_pretrained(fixture), model)


def test_docs_carry_the_catalog_tables() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "pretrained.md").read_text()
    for block in (catalog.checkpoints_markdown(), catalog.sources_markdown(), catalog.notes_markdown()):
        assert block in text, "docs/pretrained.md is out of date: python -m video_transformers.commands.info_pretrained"
