"""The lr schedules the paper configs name give the learning rates of the official code, step by step:
tests/fixtures/schedules/schedules.json holds what the official functions return (made by make_fixtures.py
there: TimeSformer's and UniFormerV2's slowfast/utils/lr_policy.py ``get_lr_at_epoch``, scenic's
train_lib/lr_schedules.py ``compound_lr_scheduler``), for the settings of the official K400 configs."""

from __future__ import annotations

import importlib
import json

import pytest
import torch

from tests.conftest import REPO
from video_transformers.cli import read_config
from video_transformers.lit.schedule import MultiStep, WarmupCosine

FIXTURES = json.loads((REPO / "tests/fixtures/schedules/schedules.json").read_text())


def _recipe(config: str) -> tuple[object, float, int]:
    """(schedule, base lr, epochs) of a shipped config, read as ``vt fit`` reads it."""
    cfg = read_config(["--config", str(REPO / "configs" / config)])
    spec = cfg.model.lr_schedule
    module, name = spec.class_path.rsplit(".", 1)
    schedule = getattr(importlib.import_module(module), name)(**spec.init_args.as_dict())
    return schedule, cfg.model.optimizer.init_args.lr, cfg.trainer.max_epochs


@pytest.mark.parametrize(
    ("config", "official"),
    [("timesformer_divided.yaml", "timesformer_k400"), ("uniformerv2_b16.yaml", "uniformerv2_k400")],
)
def test_slowfast_schedules_per_fractional_epoch(config, official):
    schedule, lr, epochs = _recipe(config)
    ref = FIXTURES[official]
    assert (lr, epochs) == (ref["solver"]["BASE_LR"], ref["solver"]["MAX_EPOCH"])
    ours = [lr * schedule.factor(e, epochs) for e in ref["epochs"]]
    torch.testing.assert_close(torch.tensor(ours), torch.tensor(ref["lr"]), rtol=1e-9, atol=1e-15)


def test_scenic_schedule_per_step_through_the_scheduler():
    schedule, lr, epochs = _recipe("vivit_spatio_temporal.yaml")
    ref = FIXTURES["vivit_k400"]
    assert (lr, epochs) == (ref["config"]["base_learning_rate"], ref["config"]["steps_per_cycle"] // 100)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = schedule.scheduler(opt, steps_per_epoch=ref["steps_per_epoch"], max_epochs=epochs)
    seen = {}
    for step in range(max(ref["steps"]) + 1):  # the lr an optimizer step uses, as Lightning steps per batch
        seen[step] = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
    ours = torch.tensor([seen[s] for s in ref["steps"]])
    torch.testing.assert_close(ours, torch.tensor(ref["lr"]), rtol=1e-6, atol=1e-8)


def test_warmup_then_steps_and_bad_settings():
    steps = MultiStep(milestones=[2, 4], gamma=0.5, warmup_epochs=1, warmup_start_ratio=0.2)
    assert [steps.factor(e, 6) for e in (0, 0.5, 1, 2, 3.9, 4)] == pytest.approx([0.2, 0.6, 1, 0.5, 0.5, 0.25])
    cosine = WarmupCosine(warmup_epochs=2, min_lr_ratio=0.1)
    assert [cosine.factor(e, 10) for e in (0, 1, 2, 6, 10, 12)] == pytest.approx([0, 0.5, 1, 0.55, 0.1, 0.1])
    with pytest.raises(ValueError, match="milestones must be increasing"):
        MultiStep(milestones=[4, 2])
    with pytest.raises(ValueError, match="min_lr_ratio=2"):
        WarmupCosine(min_lr_ratio=2)
