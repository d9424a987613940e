"""`vt` end to end, in-process: fit a few steps, then test the saved checkpoint with 2x3 views; run folders,
checkpoint checks and the errors a user meets first."""

from __future__ import annotations

import re

import pytest
import torch
import yaml

from tests.conftest import REPO
from video_transformers.cli import main, run_cli

CONFIG = str(REPO / "configs" / "vivit_factorised.yaml")


def _common(root):
    return ["--config", CONFIG, "--data.root", str(root), "--data.num_workers", "0", "--data.batch_size", "4"]


def test_fit_then_test_from_checkpoint(embedded_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the config writes runs/ relative to the working directory
    cli = run_cli(["fit", *_common(embedded_root), "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3"])
    ckpt = tmp_path / "runs/vivit_factorised/version_0/checkpoints/best.ckpt"
    assert ckpt.is_file() and cli.trainer.global_step == 3
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert saved["hyper_parameters"]["class_names"][:2] == ["move_right", "move_left"]
    assert saved["hyper_parameters"]["num_classes"] == 12 and saved["hyper_parameters"]["img_size"] == 32

    args = ["test", *_common(embedded_root), "--data.test_clips", "2", "--ckpt_path", "best"]  # this config's newest
    cli = run_cli(args)
    assert cli.trainer.ckpt_path == str(ckpt)
    metrics = cli.trainer.callback_metrics
    assert metrics["test/videos"] == 12  # one test video per class, 2x3 views each, scored per video
    assert 0.0 <= float(metrics["test/acc1"]) <= float(metrics["test/acc5"]) <= 1.0
    torch.testing.assert_close(
        cli.model.model.head.weight, saved["state_dict"]["model.head.weight"], msg="test used the checkpoint"
    )


def test_fast_dev_run(embedded_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = run_cli(["fit", *_common(embedded_root), "--trainer.fast_dev_run", "2"])
    assert cli.trainer.global_step == 2


def test_help_lists_every_command_and_print_config(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    for command in ("fit", "validate", "test", "predict", "info", "data", "sweep", "explain", "export"):
        assert re.search(rf"^  {command} +\S", out, re.M), f"vt --help does not list {command}:\n{out}"
    with pytest.raises(SystemExit) as e:
        main(["fti"])
    assert "did you mean fit" in str(e.value.code)
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", CONFIG, "--print_config"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "vivit_base_factorised_encoder_16x2" in out and "num_frames: 8" in out
    assert "lr: 0.001" in out  # from the config's base (configs/recipes/embedded_cpu.yaml)


def test_config_typo_is_a_parser_error(tmp_path, capsys):
    typo = tmp_path / "typo.yaml"
    typo.write_text("data:\n  num_framez: 8\n")
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", CONFIG, "--config", str(typo)])
    assert e.value.code != 0
    err = capsys.readouterr().err
    assert "num_framez" in err and "did you mean --data.num_frames" in err


def test_abbreviated_key_is_rejected_naming_the_closest(capsys):
    with pytest.raises(SystemExit) as e:  # argparse would take --data.num_frame as --data.num_frames
        main(["fit", "--config", CONFIG, "--data.num_frame", "4", "--print_config"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--data.num_frame" in err and "did you mean --data.num_frames?" in err
    assert len(err.strip().splitlines()) <= 2, err  # the error, not the usage of every option


def test_unknown_backbone_names_close_matches():
    from video_transformers.lit import VideoClassifier

    with pytest.raises(KeyError, match="did you mean 'vivit_base_factorised_encoder_16x2'"):
        VideoClassifier(backbone="vivit_base_factorized_encoder_16x2", num_classes=3)


def _fit(root, *extra):
    return run_cli(["fit", *_common(root), "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", *extra])


def test_each_run_has_its_own_folder_and_last_finds_the_newest(embedded_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first, second = _fit(embedded_root), _fit(embedded_root)
    runs = tmp_path / "runs/vivit_factorised"
    assert sorted(p.name for p in runs.iterdir()) == ["version_0", "version_1"]  # nothing overwritten
    for cli, version in ((first, "version_0"), (second, "version_1")):
        assert cli.trainer.default_root_dir == str(runs / version)
        assert {p.name for p in (runs / version / "checkpoints").glob("*.ckpt")} == {"best.ckpt", "last.ckpt"}
        assert (runs / version / "config.yaml").is_file()
    more = ["--trainer.max_epochs", "2", "--trainer.limit_train_batches", "1", "--ckpt_path", "last"]
    resumed = run_cli(["fit", *_common(embedded_root), *more])
    assert resumed.trainer.ckpt_path == str(runs / "version_1/checkpoints/last.ckpt")
    assert resumed.trainer.default_root_dir == str(runs / "version_1")  # a resumed run stays in its folder
    assert resumed.trainer.global_step == 2 and not (runs / "version_2").exists()

    saved = yaml.safe_load((runs / "version_0/config.yaml").read_text())  # names the run, but no folder
    assert saved["run"]["name"] == "vivit_factorised" and saved["trainer"]["default_root_dir"] is None
    assert saved["checkpoint"]["dirpath"] is None and saved["trainer"]["logger"]["init_args"]["save_dir"] is None
    again = run_cli(["fit", "--config", str(runs / "version_0/config.yaml"), "--trainer.max_epochs", "1"])
    assert again.trainer.default_root_dir == str(runs / "version_2")  # running a saved config is a new run

    named = _fit(embedded_root, "--run.name", "mine", "--run.root", str(tmp_path / "elsewhere"))
    assert named.trainer.default_root_dir == str(tmp_path / "elsewhere/mine/version_0")
    assert (tmp_path / "elsewhere/mine/version_0/checkpoints/last.ckpt").is_file()


def test_evaluating_needs_weights(embedded_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        run_cli(["test", *_common(embedded_root)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "no weights to test" in err and "--ckpt_path" in err
    assert not (tmp_path / "runs").exists()  # refused before anything was written
    with pytest.raises(SystemExit) as e:
        run_cli(["test", *_common(embedded_root), "--ckpt_path", "best"])
    assert e.value.code == 2 and "no best.ckpt under runs/vivit_factorised/*" in capsys.readouterr().err
    cli = run_cli(["test", *_common(embedded_root), "--data.test_clips", "1", "--data.test_crops", "1",
                   "--allow_random_weights", "true"])  # fmt: skip
    assert cli.trainer.callback_metrics["test/videos"] == 12


def test_checkpoints_of_another_class_count_or_architecture_are_refused(embedded_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _fit(embedded_root)
    ckpt = tmp_path / "runs/vivit_factorised/version_0/checkpoints/last.ckpt"
    five = tmp_path / "five"  # a dataset of 5 of the 12 classes
    five.mkdir()
    (five / "videos").symlink_to(embedded_root / "videos")
    names = (embedded_root / "classes.txt").read_text().split()[:5]
    (five / "classes.txt").write_text("\n".join(names) + "\n")
    rows = [r for r in (embedded_root / "test.csv").read_text().splitlines()[1:] if r.split(",")[1] in names]
    (five / "test.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(ValueError) as e:
        run_cli(["test", *_common(five), "--data.dataset", "csv", "--ckpt_path", str(ckpt)])
    assert f"{ckpt}: checkpoint has 12 classes, the data has 5" in str(e.value)
    assert f"--model.init_from {ckpt}" in str(e.value)

    timesformer = str(REPO / "configs" / "timesformer_divided.yaml")
    with pytest.raises(SystemExit) as e:
        run_cli(["test", "--config", timesformer, "--data.root", str(embedded_root), "--ckpt_path", str(ckpt)])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert "holds a vivit_base_factorised_encoder_16x2 model" in err and "timesformer_base_divided_8x224" in err


def test_configs_build_on_bases_relative_to_them(tmp_path, capsys):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes/r.yaml").write_text("model:\n  label_smoothing: 0.3\ndata:\n  batch_size: 5\n")
    (tmp_path / "m.yaml").write_text("base: recipes/r.yaml\ndata:\n  batch_size: 7\n")  # the file wins over its base
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", str(tmp_path / "m.yaml"), "--print_config"])
    out = yaml.safe_load(capsys.readouterr().out)
    assert e.value.code == 0 and out["model"]["label_smoothing"] == 0.3 and out["data"]["batch_size"] == 7
    assert out["base"] is None  # applied: the printed config stands alone
    (tmp_path / "recipes/r.yaml").write_text("base: ../m.yaml\n")
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", str(tmp_path / "m.yaml"), "--print_config"])
    assert e.value.code == 2 and "a cycle" in capsys.readouterr().err
