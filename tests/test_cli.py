"""`vt` end to end, in-process: fit a few steps, then test the saved checkpoint with 2x3 views."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import REPO
from video_transformers.cli import main, run_cli

CONFIG = str(REPO / "configs" / "vivit_factorised.yaml")


def _common(root):
    return ["--config", CONFIG, "--data.root", str(root), "--data.num_workers", "0", "--data.batch_size", "4"]


def test_fit_then_test_from_checkpoint(embedded_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the config writes runs/ relative to the working directory
    cli = run_cli(["fit", *_common(embedded_root), "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3"])
    ckpt = tmp_path / "runs/vivit_factorised/checkpoints/best.ckpt"
    assert ckpt.is_file() and cli.trainer.global_step == 3
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert saved["hyper_parameters"]["class_names"][:2] == ["move_right", "move_left"]
    assert saved["hyper_parameters"]["num_classes"] == 12 and saved["hyper_parameters"]["img_size"] == 32

    args = ["test", *_common(embedded_root), "--data.test_clips", "2", "--ckpt_path", str(ckpt)]
    cli = run_cli(args)
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


def test_help_and_print_config(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "fit" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", CONFIG, "--print_config"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "vivit_base_factorised_encoder_16x2" in out and "num_frames: 8" in out


def test_config_typo_is_a_parser_error(tmp_path, capsys):
    typo = tmp_path / "typo.yaml"
    typo.write_text("data:\n  num_framez: 8\n")
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", CONFIG, "--config", str(typo)])
    assert e.value.code != 0
    assert "num_framez" in capsys.readouterr().err


def test_unknown_backbone_names_close_matches():
    from video_transformers.lit import VideoClassifier

    with pytest.raises(KeyError, match="did you mean 'vivit_base_factorised_encoder_16x2'"):
        VideoClassifier(backbone="vivit_base_factorized_encoder_16x2", num_classes=3)
