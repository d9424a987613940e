"""W&B sweep definitions: schema checks, grid/random expansion, agent macros, the shipped files, and `vt sweep`
end to end (one tiny run, then `vt test` on its best checkpoint and the comparison table)."""

from __future__ import annotations

import csv
import json
import sys

import pytest
import yaml

from tests.conftest import REPO
from video_transformers.commands import sweep as sweep_cmd
from video_transformers.sweeps import SweepError, expand_command, grid, load_sweep, runs, validate

SWEEPS = sorted((REPO / "configs" / "sweeps").glob("*.yaml"))
SWEEP_FILES = [p for p in SWEEPS if "method" in yaml.safe_load(p.read_text())]


def _sweep(**overrides):
    config = {
        "method": "grid",
        "program": "train.py",
        "metric": {"name": "val/acc1", "goal": "maximize"},
        "parameters": {"model.backbone": {"values": ["a", "b"]}, "trainer.max_epochs": {"values": [1, 2, 3]}},
    }
    return config | overrides


def test_grid_is_the_product_in_file_order():
    combos = grid(_sweep()["parameters"])
    assert len(combos) == 6 and combos[0] == {"model.backbone": "a", "trainer.max_epochs": 1}
    assert combos[1] == {"model.backbone": "a", "trainer.max_epochs": 2}
    assert runs(_sweep(), max_runs=4) == combos[:4]


def test_random_search_draws_within_bounds_reproducibly():
    config = _sweep(
        method="random",
        run_cap=50,
        parameters={
            "lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2},
            "depth": {"min": 2, "max": 4},
            "scheme": {"values": ["x", "y"], "probabilities": [0.9, 0.1]},
            "seed": {"value": 7},
        },
    )
    validate(config)
    draws = runs(config, seed=3)
    assert len(draws) == 50 and draws == runs(config, seed=3) and draws != runs(config, seed=4)
    assert all(1e-4 <= d["lr"] <= 1e-2 and d["depth"] in (2, 3, 4) and d["seed"] == 7 for d in draws)
    assert isinstance(draws[0]["depth"], int)
    assert sum(d["scheme"] == "x" for d in draws) > 30


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(method="hyperband"), "method must be one of"),
        (dict(parameters={"lr": {"distribution": "uniform", "min": 0.1, "max": 1.0}}), "grid search needs value"),
        (
            dict(parameters={"lr": {"distribution": "uniform", "min": 0.1}}),
            "parameters.lr: distribution uniform needs 'max'",
        ),
        (dict(parameters={"lr": {"valuez": [1]}}), "parameters.lr: unknown key"),
        (dict(metric={"name": "x", "goal": "up"}), "metric.goal"),
        (dict(commands=["x"]), "unknown top-level key"),
        (dict(parameters={}), "parameters must be a non-empty mapping"),
    ],
)
def test_invalid_definitions_name_the_key(change, message):
    with pytest.raises(SweepError, match=message):
        validate(_sweep(**change), "s.yaml")


def test_bayes_needs_the_wandb_server():
    with pytest.raises(SweepError, match="wandb agent"):
        runs(_sweep(method="bayes"))


def test_command_macros_expand_like_the_agent():
    config = _sweep(
        command=["${env}", "${interpreter}", "${program}", "fit", "${args}", "${args_no_hyphens}", "${args_json}"]
    )
    argv = expand_command(config, {"model.backbone": "a", "x": True, "y": 0.5})
    assert argv[:4] == ["/usr/bin/env", sys.executable, "train.py", "fit"]
    assert argv[4:7] == ["--model.backbone=a", "--x=true", "--y=0.5"]
    assert argv[7:10] == ["model.backbone=a", "x=true", "y=0.5"]
    assert argv[10] == '{"model.backbone": "a", "x": true, "y": 0.5}'
    default = expand_command({k: v for k, v in config.items() if k != "command"}, {"a": 1})
    assert default == ["/usr/bin/env", sys.executable, "train.py", "--a=1"]


@pytest.mark.parametrize("path", SWEEP_FILES, ids=[p.stem for p in SWEEP_FILES])
def test_shipped_sweeps_are_valid_and_run_vt_fit(path, monkeypatch):
    monkeypatch.chdir(REPO)
    config = load_sweep(path)
    assert config["method"] == "grid" and config["metric"]["goal"] == "maximize"
    for params in runs(config):
        argv = expand_command(config, params)
        assert argv[argv.index("-m") + 1] == "video_transformers.cli" and "fit" in argv
        sweep_cmd._check_configs(argv)  # every config the command names exists
    if path.name == "attention_schemes.yaml":
        schemes = config["parameters"]["model.backbone"]["values"]
        assert {
            "timesformer_base_space_only_8x224",
            "timesformer_base_joint_8x224",
            "timesformer_base_divided_8x224",
        } <= set(schemes)


def test_missing_sweep_file_and_bad_override(tmp_path, capsys):
    assert sweep_cmd.main([str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: sweep file not found" in capsys.readouterr().err
    assert (
        sweep_cmd.main([str(REPO / "configs/sweeps/attention_schemes.yaml"), "--override", "trainer.max_epochs"]) == 2
    )
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_vt_sweep_runs_fit_then_test_and_writes_the_table(embedded_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)  # the sweep command names its base config relative to the repository root
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "sweep"
    overrides = [
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "data.batch_size=4",
        "data.num_workers=0",
        f"data.root={embedded_root}",
    ]
    argv = [
        str(REPO / "configs/sweeps/attention_schemes.yaml"),
        "--max-runs",
        "2",
        "--parallel",
        "2",
        "--output",
        str(out),
        "--markdown",
        str(tmp_path / "table.md"),
    ]
    for o in overrides:
        argv += ["--override", o]
    assert sweep_cmd.main(argv) == 0, capsys.readouterr().out
    rows = list(csv.DictReader(open(out / "results.csv")))
    # two runs at once, rows in the grid's order whichever finished first
    assert [r["model.backbone"] for r in rows] == ["timesformer_base_space_only_8x224", "timesformer_base_joint_8x224"]
    assert all(r["status"] == "ok" for r in rows)
    row = rows[0]
    assert 0.0 <= float(row["test_acc1"]) <= 1.0 and 0.0 <= float(row["direction_acc"]) <= 1.0
    assert float(row["params_m"]) > 0 and float(row["gflops"]) > 0 and float(row["peak_mem_mb"]) > 0
    assert row["videos"] == "12"
    md = (tmp_path / "table.md").read_text()
    assert "| timesformer_base_space_only_8x224 |" in md and md == (out / "results.md").read_text()
    assert (out / "results.png").stat().st_size > 0
    assert (out / "00_timesformer_base_space_only_8x224" / "test.log").is_file()

    # --resume: finished runs are read back (nothing re-runs); a run whose test did not end ok is only re-tested
    run_dirs = [out / "00_timesformer_base_space_only_8x224", out / "01_timesformer_base_joint_8x224"]
    stamps = {p: p.stat().st_mtime_ns for r in run_dirs for p in (r / "fit.log", r / "test.log")}
    (run_dirs[1] / "row.json").write_text(json.dumps({"status": "test failed (exit 1)"}))
    assert sweep_cmd.main([*argv, "--resume"]) == 0, capsys.readouterr().out
    assert all(
        stamps[p] == p.stat().st_mtime_ns
        for p in (run_dirs[0] / "fit.log", run_dirs[0] / "test.log", run_dirs[1] / "fit.log")
    )
    assert stamps[run_dirs[1] / "test.log"] != (run_dirs[1] / "test.log").stat().st_mtime_ns
    again = list(csv.DictReader(open(out / "results.csv")))
    assert [r["test_acc1"] for r in again] == [r["test_acc1"] for r in rows] and all(r["status"] == "ok" for r in again)


@pytest.mark.parametrize("path", SWEEP_FILES, ids=[p.stem for p in SWEEP_FILES])
def test_every_shipped_sweep_completes_a_one_step_run(path, embedded_root, tmp_path, monkeypatch, capsys):
    """The paper-sized ViViT sweep through the CPU smoke profile (its runs once looked for their checkpoint in the
    config's hard-coded folder and reported "fit failed (exit 0)")."""
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "sweep"
    overrides = [
        "config=configs/profiles/cpu_smoke.yaml",
        "trainer.limit_train_batches=1",
        "model.pretrained=null",  # no downloads in the tests (the smoke profile test covers the fallback)
        f"data.root={embedded_root}",
    ]
    argv = [str(path), "--max-runs", "1", "--output", str(out)]
    assert sweep_cmd.main([*argv, *(a for o in overrides for a in ("--override", o))]) == 0, capsys.readouterr().out
    (row,) = list(csv.DictReader(open(out / "results.csv")))
    assert row["status"] == "ok" and 0.0 <= float(row["test_acc1"]) <= 1.0
    ckpt = next(out.glob("00_*/version_0/checkpoints/last.ckpt"))  # the profile keeps last.ckpt only
    assert row["checkpoint"] == str(ckpt) and (ckpt.parent / "test_summary.json").is_file()


def test_sweep_shows_progress_and_a_table_after_every_run(tmp_path, monkeypatch, capsys):
    """A half-finished sweep already has its table: each run's end rewrites results.md (later runs pending) and
    prints runs done of total, elapsed time and ETA."""
    out = tmp_path / "sweep"
    seen: list[str] = []

    def fake_run_one(config, params, index, out_, overrides, resume=False):  # noqa: ANN001, ANN202, ARG001
        if index > 0:
            seen.append((out / "results.md").read_text())
        return {"run": f"{index:02d}", **params, "test_acc1": 0.5 + index / 10, "status": "ok"}

    monkeypatch.setattr(sweep_cmd, "run_one", fake_run_one)
    argv = [str(REPO / "configs/sweeps/attention_schemes.yaml"), "--max-runs", "3", "--output", str(out)]
    assert sweep_cmd.main(argv) == 0
    stdout = capsys.readouterr().out
    assert "1 of 3 runs done" in seen[0] and seen[0].count("(pending)") == 2 and "| 50.0 |" in seen[0]
    assert "2 of 3 runs done" in seen[1] and seen[1].count("(pending)") == 1 and "| 60.0 |" in seen[1]
    for k in (1, 2, 3):
        assert f"sweep timesformer-attention-schemes: {k}/3 runs done, elapsed 0:00:0" in stdout
    assert "ETA 0:00:00" in stdout and "pending" not in (out / "results.md").read_text()
    assert "3 runs (grid)" in (out / "results.md").read_text()
