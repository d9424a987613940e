"""scenic's ViViT checkpoints through ``from_pretrained`` (format ``scenic_vivit``), checked against scenic itself.

The fixtures under ``tests/fixtures/scenic/`` were written by ``tests/fixtures/make_scenic_fixtures.py``, which
runs scenic's own Flax model code (``scenic/projects/vivit/model.py``: ``ViViT`` and ``SpaceTimeViViT``) on
random non-zero weights for all four models (Model 1 token and gap with 2D-patch frame sampling, Model 2 token
and gap, Model 3 in both attention orders, Model 4), in the three checkpoint layouts scenic writes, and records
scenic's logits. Nothing here is compared against our own writer.
"""

from __future__ import annotations

import json
import zipfile

import msgpack
import numpy as np
import pytest
import torch

from tests.conftest import REPO
from video_transformers.models import create_model
from video_transformers.pretrained import from_pretrained, list_formats
from video_transformers.pretrained.common import PretrainedError, load_checked
from video_transformers.pretrained.scenic import (
    convert_scenic_vivit,
    infer_architecture,
    is_scenic_checkpoint,
    params_tree,
    read_flax_msgpack,
)

FIXTURES = REPO / "tests" / "fixtures" / "scenic"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
CASES = EXPECTED["checkpoints"]
TOLERANCE = 1e-5  # issue 13: max |logit difference| from scenic's output
REGISTERED = {  # the registered variant of each scenic attention type (its class and defaults)
    "ViViTSpatioTemporal": "vivit_base_spatio_temporal_16x2",
    "ViViTFactorisedEncoder": "vivit_base_factorised_encoder_16x2",
    "ViViTFactorisedSelfAttention": "vivit_base_factorised_self_attention_16x2",
    "ViViTFactorisedDotProduct": "vivit_base_factorised_dot_product_16x2",
}


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    """The fixtures' input, ``(B, T, H, W, C)`` in scenic -> ``(B, C, T, H, W)`` here."""
    return torch.from_numpy(np.load(FIXTURES / EXPECTED["input"]).astype(np.float32)).permute(0, 4, 1, 2, 3)


def _max_diff(model: torch.nn.Module, clip: torch.Tensor, name: str) -> float:
    with torch.no_grad():
        return (model.eval()(clip) - torch.tensor(CASES[name]["logits"])).abs().max().item()


def test_fixtures_cover_every_model_and_layout():
    types = {c["from_pretrained_kwargs"]["attention_type"] for c in CASES.values()}
    assert types == {
        "spacetime",
        "factorized_encoder",
        "factorized_self_attention_block",
        "factorized_dot_product_attention",
    }
    assert {c["layout"] for c in CASES.values()} == {"trainer", "train_state", "params"}
    trainer = {c["from_pretrained_kwargs"]["attention_type"] for c in CASES.values() if c["layout"] == "trainer"}
    assert trainer == types  # all four models in the released checkpoints' layout
    assert sum(f.stat().st_size for f in FIXTURES.iterdir()) < 1 << 20


@pytest.mark.parametrize("name", list(CASES))
def test_from_pretrained_matches_scenic_logits(name, clip):
    case = CASES[name]
    model = from_pretrained(FIXTURES / case["file"], **case["from_pretrained_kwargs"])  # format detected
    assert not model.training and (model.mean, model.std) == ((0.5,) * 3, (0.5,) * 3)
    diff = _max_diff(model, clip, name)
    assert diff <= TOLERANCE, f"{name}: max |logit diff| {diff:.2e} vs scenic"
    assert (model.num_frames, model.img_size, model.num_classes) == (6, 16, 5)


def _converted(name: str) -> tuple[type, dict, dict[str, torch.Tensor]]:
    case = CASES[name]
    path = FIXTURES / case["file"]
    params = params_tree(read_flax_msgpack(path), path)
    cls, kwargs = infer_architecture(params, path, **case["from_pretrained_kwargs"])
    return cls, kwargs, convert_scenic_vivit(params, cls, kwargs, path)


@pytest.mark.parametrize("name", list(CASES))
def test_registered_defaults_reproduce_scenic(name, clip):
    """The registered models with only sizes given (default activation, Model 4 head order, pooling of the
    registered variant) compute scenic's function: the defaults are scenic's, not an argument the loader sets.
    Exact GELU (the former default) is off by more than the tolerance on every fixture."""
    cls, kwargs, state_dict = _converted(name)
    sizes = {k: v for k, v in kwargs.items() if k not in ("act", "norm_eps", "qkv_bias", "order", "global_pool")}
    if kwargs.get("global_pool") == "avg":
        sizes["global_pool"] = "avg"  # scenic's gap classifier is a choice of the checkpoint, not a default
    if "order" in kwargs:
        sizes["order"] = kwargs["order"]  # so is Model 3's attention_order
    model = create_model(REGISTERED[cls.__name__], **sizes)
    load_checked(model, state_dict)
    assert _max_diff(model, clip, name) <= TOLERANCE
    exact = create_model(REGISTERED[cls.__name__], **sizes, act="gelu")
    load_checked(exact, state_dict)
    assert _max_diff(exact, clip, name) > TOLERANCE  # the fixtures see the activation


def test_model4_time_heads_first_as_scenic(clip):
    """scenic/projects/vivit/model_utils.py:120-166: the first half of the heads attend over time. Swapping
    the two halves of every projection (the former space-first order on the same function) is far off."""
    cls, kwargs, state_dict = _converted("m4")
    heads, dim = kwargs["num_heads"], kwargs["embed_dim"]
    half = dim // 2  # the channels of one half of the heads
    swapped = dict(state_dict)
    for k, v in state_dict.items():
        if k.endswith("attn.qkv.weight") or k.endswith("attn.qkv.bias"):
            q, kk, vv = v.chunk(3)
            swapped[k] = torch.cat([torch.cat([z[half:], z[:half]]) for z in (q, kk, vv)])
        elif k.endswith("attn.proj.weight"):
            swapped[k] = torch.cat([v[:, half:], v[:, :half]], dim=1)
    assert heads % 2 == 0
    model = cls(**kwargs)
    load_checked(model, state_dict)
    assert _max_diff(model, clip, "m4") <= TOLERANCE
    load_checked(model, swapped)
    assert _max_diff(model, clip, "m4") > 1e-2


def test_attention_type_is_needed_where_the_tree_cannot_tell():
    path = FIXTURES / CASES["m4"]["file"]
    with pytest.raises(PretrainedError, match=r"identical parameter trees; pass attention_type="):
        from_pretrained(path, num_frames=6)
    with pytest.raises(PretrainedError, match=r"'factorized_encoder', but the parameters are those of Model 1 or 4"):
        from_pretrained(path, attention_type="factorized_encoder", num_frames=6)
    with pytest.raises(PretrainedError, match="unknown attention_type 'factorised_encoder'"):
        from_pretrained(path, attention_type="factorised_encoder", num_frames=6)
    m3 = FIXTURES / CASES["m3_time_space"]["file"]
    with pytest.raises(PretrainedError, match="attention_order= as in the scenic config"):
        from_pretrained(m3, attention_type="factorized_self_attention_block", num_frames=6)
    # Model 2 and Model 3 trees say what they are: no attention_type needed
    assert type(from_pretrained(FIXTURES / CASES["m2_token"]["file"])).__name__ == "ViViTFactorisedEncoder"
    m3_model = from_pretrained(m3, attention_order="time_space", img_size=16)
    assert type(m3_model).__name__ == "ViViTFactorisedSelfAttention" and m3_model.num_frames == 6
    assert not m3_model.encoder.blocks[0].spatial_first  # time_space: the temporal step first


def test_sizes_are_inferred_or_checked():
    m1 = FIXTURES / CASES["m1_token"]["file"]
    assert from_pretrained(m1, attention_type="spacetime", img_size=16).num_frames == 6  # 1 + 3*16 tokens
    with pytest.raises(PretrainedError, match="pass num_frames= or img_size="):
        from_pretrained(m1, attention_type="spacetime")  # 48 tokens: scenic's 224 crop (196 per frame) does not fit
    with pytest.raises(PretrainedError, match="resampling a scenic position embedding is not implemented"):
        from_pretrained(m1, attention_type="spacetime", num_frames=8, img_size=16)
    with pytest.raises(PretrainedError, match="resampling is not implemented"):
        from_pretrained(FIXTURES / CASES["m2_gap"]["file"], num_frames=8)


def test_new_class_count_gives_a_new_classifier(clip):
    model = from_pretrained(FIXTURES / CASES["m2_token"]["file"], num_classes=3, drop_path_rate=0.1)
    assert model.head.out_features == 3 and model.head.weight.any()  # timm's truncated normal by default
    assert model.spatial.blocks[-1].drop_path1.p == pytest.approx(0.1)
    scenic_recipe = from_pretrained(FIXTURES / CASES["m2_token"]["file"], num_classes=3, head_init="zeros")
    assert not scenic_recipe.head.weight.any()  # scenic's zero output projection (model.py:658-661)


def test_init_from_builds_a_recorded_backbone(clip):
    """``VideoClassifier(init_from=...)`` (``vt fit --model.init_from``): the backbone and the spec that
    rebuilds it from this suite's own checkpoints."""
    from video_transformers.lit import VideoClassifier

    lit = VideoClassifier(init_from=str(FIXTURES / CASES["m2_gap"]["file"]), num_frames=6, img_size=16)
    assert lit.backbone_spec["class"].endswith(":ViViTFactorisedEncoder")
    assert lit.backbone_spec["kwargs"]["global_pool"] == "avg" and lit.backbone_spec["kwargs"]["act"] == "gelu_tanh"
    assert _max_diff(lit.model, clip, "m2_gap") <= TOLERANCE


@pytest.mark.parametrize("name", ["m1_token", "m3_time_space", "m4"])
def test_init_from_passes_the_data_sizes_to_the_loader(name, clip):
    """Models 1, 3 and 4 store no crop size: ``init_from`` reads them at the data's sizes (6 frames at 16 px
    here, not scenic's default 224 crop), with the scenic config's names in ``backbone_kwargs``."""
    from video_transformers.lit import VideoClassifier

    options = {k: v for k, v in CASES[name]["from_pretrained_kwargs"].items() if k.startswith("attention_")}
    source = str(FIXTURES / CASES[name]["file"])
    lit = VideoClassifier(init_from=source, num_frames=6, img_size=16, backbone_kwargs=options)
    assert (lit.model.num_frames, lit.model.img_size) == (6, 16)
    assert _max_diff(lit.model, clip, name) <= TOLERANCE
    with pytest.raises(PretrainedError, match=r"(?s)built for \{'num_frames': 6\}.*data.num_frames"):
        VideoClassifier(init_from=source, num_frames=8, img_size=16, backbone_kwargs=options)


# -- the file format ------------------------------------------------------------------------------------------
def test_flax_msgpack_reader_without_jax():
    state = read_flax_msgpack(FIXTURES / CASES["m1_token"]["file"])  # the trainer layout
    assert set(state) == {"accum_train_time", "global_step", "model_state", "optimizer", "rng"}
    momentum = state["optimizer"]["state"]["param_states"]["embedding"]["kernel"]["momentum"]
    assert momentum.dtype == torch.bfloat16  # scenic's MomentumHP keeps bfloat16 state
    assert state["optimizer"]["target"]["embedding"]["kernel"].shape == (2, 4, 4, 3, 16)
    assert state["optimizer"]["state"]["step"] == 7


def _ndarray(a: np.ndarray) -> msgpack.ExtType:
    """flax's ndarray extension (flax/serialization.py ``_ndarray_to_bytes``), for hand-made files."""
    return msgpack.ExtType(1, msgpack.packb((a.shape, a.dtype.name, a.tobytes("C")), use_bin_type=True))


def test_chunked_arrays_are_joined(tmp_path):
    """flax splits arrays over 1 GiB into ``__msgpack_chunked_array__`` maps (flax/serialization.py:344-361)."""
    a = np.arange(10, dtype=np.float32).reshape(2, 5)
    chunked = {"__msgpack_chunked_array__": True, "shape": {"0": 2, "1": 5}}
    chunked["chunks"] = {"0": _ndarray(a.reshape(-1)[:4]), "1": _ndarray(a.reshape(-1)[4:])}
    (tmp_path / "c").write_bytes(msgpack.packb({"params": {"w": chunked}}))
    np.testing.assert_array_equal(read_flax_msgpack(tmp_path / "c")["params"]["w"], a)


def test_other_files_are_refused_with_their_name(tmp_path):
    other = tmp_path / "checkpoint_7"
    other.write_bytes(msgpack.packb({"step": 3, "opt": {"w": _ndarray(np.zeros(2, np.float32))}}))
    assert is_scenic_checkpoint(other) and "scenic_vivit" in list_formats()
    with pytest.raises(PretrainedError, match=rf"{other}: not a scenic ViViT checkpoint"):
        from_pretrained(other)
    truncated = tmp_path / "truncated"
    truncated.write_bytes((FIXTURES / CASES["m4"]["file"]).read_bytes()[:5000])
    with pytest.raises(PretrainedError, match=rf"{truncated}: not a readable flax msgpack checkpoint"):
        from_pretrained(truncated, format="scenic_vivit")
    pickled = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, pickled, _use_new_zipfile_serialization=False)  # starts with 0x80
    archive = tmp_path / "weights.pth"
    torch.save({"w": torch.zeros(2)}, archive)
    assert zipfile.is_zipfile(archive)
    assert (
        not is_scenic_checkpoint(pickled) and not is_scenic_checkpoint(archive) and not is_scenic_checkpoint(tmp_path)
    )
