"""Training at scale, on a CPU: bf16-mixed precision, gradient accumulation, activation checkpointing and
torch.compile give the outputs of the plain model; layer-wise lr decay and the no-weight-decay groups."""

from __future__ import annotations

import math
from types import SimpleNamespace
from unittest import mock

import pytest
import torch

from tests.conftest import REPO
from video_transformers.cli import run_cli
from video_transformers.lit import VideoClassifier
from video_transformers.lit.classifier import layer_ids

CONFIG = str(REPO / "configs" / "vivit_factorised.yaml")
TINY = dict(img_size=32, num_frames=4, patch_size=8, embed_dim=32, depth=2, num_heads=2, drop_path_rate=0.0)


def _classifier(**kwargs) -> VideoClassifier:
    torch.manual_seed(0)
    return VideoClassifier(backbone="timesformer_base_divided_8x224", backbone_kwargs=TINY, num_classes=5, **kwargs)


def _video(b: int = 2) -> torch.Tensor:
    return torch.randn(b, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))


def test_bf16_mixed_and_accumulation_train_on_cpu(embedded_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [
        "fit",
        "--config",
        CONFIG,
        "--data.root",
        str(embedded_root),
        "--data.num_workers",
        "0",
        "--data.batch_size",
        "4",
        "--trainer.precision",
        "bf16-mixed",
        "--trainer.accumulate_grad_batches",
        "2",
        "--trainer.max_steps",
        "2",
        "--trainer.limit_val_batches",
        "0",
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.init_args.save_dir=logs",
    ]
    cli = run_cli(args)
    assert cli.trainer.precision == "bf16-mixed"
    assert cli.trainer.global_step == 2 and cli.trainer.fit_loop.epoch_loop.batch_progress.total.completed == 4
    assert math.isfinite(float(cli.trainer.callback_metrics["train/loss"]))
    assert all(p.dtype == torch.float32 for p in cli.model.parameters())  # weights stay fp32; autocast computes bf16


def test_grad_checkpointing_gives_the_same_outputs_and_gradients():
    x = _video()
    outs = []
    for enable in (False, True):
        model = _classifier(grad_checkpointing=enable).train()
        assert model.model.grad_checkpointing is enable
        y = model(x)
        y.square().sum().backward()
        outs.append((y.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    torch.testing.assert_close(outs[1][0], outs[0][0])
    assert outs[0][1].keys() == outs[1][1].keys()
    for n, g in outs[0][1].items():
        torch.testing.assert_close(outs[1][1][n], g, rtol=1e-5, atol=1e-6, msg=n)


def test_compile_gives_the_same_outputs_and_state_dict_keys():
    x = _video()
    plain = _classifier().eval()
    compiled = _classifier(compile=True).eval()
    assert plain.state_dict().keys() == compiled.state_dict().keys()  # checkpoints interchange
    compiled.load_state_dict(plain.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), plain(x), rtol=1e-4, atol=1e-5)


def _optimizer(model: VideoClassifier) -> torch.optim.Optimizer:
    trainer = SimpleNamespace(estimated_stepping_batches=10, max_epochs=1)
    with mock.patch.object(VideoClassifier, "trainer", new_callable=mock.PropertyMock, return_value=trainer):
        return model.configure_optimizers()["optimizer"]


def test_layer_decay_scales_lr_by_depth_and_keeps_no_weight_decay_groups():
    lr, decay = 1e-3, 0.5
    model = _classifier(layer_decay=decay)
    opt = _optimizer(model)
    ids, num_layers = layer_ids(model.model)
    assert num_layers == 2
    by_param = {id(p): g for g in opt.param_groups for p in g["params"]}
    named = dict(model.model.named_parameters())
    expect = {
        "patch_embed.proj.weight": 0,
        "pos_embed": 0,
        "cls_token": 0,
        "time_embed": 0,
        "blocks.0.attn.qkv.weight": 1,
        "blocks.1.temporal_attn.qkv.weight": 2,
        "head.weight": 3,
        "norm.weight": 3,
    }
    for name, layer in expect.items():
        assert ids[name] == layer, name
        assert by_param[id(named[name])]["initial_lr"] == pytest.approx(lr * decay ** (num_layers + 1 - layer)), name
    for name in ("pos_embed", "cls_token", "time_embed", "norm.weight", "blocks.0.attn.qkv.bias", "head.bias"):
        assert by_param[id(named[name])]["weight_decay"] == 0.0, name
    assert by_param[id(named["blocks.0.attn.qkv.weight"])]["weight_decay"] == 0.05
    assert sum(len(g["params"]) for g in opt.param_groups) == len(named)

    plain = _optimizer(_classifier())
    assert len(plain.param_groups) == 2 and all(g["initial_lr"] == lr for g in plain.param_groups)


def test_layer_ids_stack_temporal_over_spatial_blocks():
    model = VideoClassifier(
        backbone="vivit_base_factorised_encoder_16x2",
        num_classes=3,
        num_frames=4,
        img_size=32,
        backbone_kwargs=dict(
            patch_size=8, tubelet_size=2, embed_dim=32, spatial_depth=2, temporal_depth=1, num_heads=2
        ),
    )
    ids, num_layers = layer_ids(model.model)
    assert num_layers == 3
    assert ids["spatial.blocks.1.attn.qkv.weight"] == 2 and ids["temporal.blocks.0.attn.qkv.weight"] == 3
    assert ids["temporal_cls_token"] == 0 and ids["head.weight"] == 4
    with pytest.raises(ValueError, match="layer_decay"):
        _classifier(layer_decay=1.5)
