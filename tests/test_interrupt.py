"""`vt fit` stopped by SIGTERM / SIGINT saves a resumable ``last.ckpt``, exits non-zero saying how to resume,
and the resumed run continues from the saved step; SIGUSR1 (preemption) saves and ends cleanly. The signal is
sent as schedulers send it: to this process, and to the whole process group of a real `vt fit` with loader
workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import lightning as L
import pytest
import torch

from tests.conftest import REPO
from video_transformers.cli import run_cli
from video_transformers.lit.interrupt import TrainingInterrupted

CONFIG = str(REPO / "configs" / "vivit_factorised.yaml")


class SignalAt(L.Callback):
    """Sends ``signum`` to this process when training batch ``step`` starts (as a scheduler would)."""

    def __init__(self, step: int = 2, signum: int = int(signal.SIGTERM)) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


class FirstStep(L.Callback):
    """Records the global step of every training batch (class-level: the CLI builds the instance)."""

    seen: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        FirstStep.seen.append(trainer.global_step)


def _args(root, *extra):
    return [
        "fit",
        "--config",
        CONFIG,
        "--data.root",
        str(root),
        "--data.num_workers",
        "0",
        "--data.batch_size",
        "4",
        "--trainer.max_epochs",
        "1",
        "--trainer.limit_train_batches",
        "5",
        *extra,
    ]


def _callback(cls: str, **init_args) -> str:
    return "--trainer.callbacks+=" + json.dumps({"class_path": cls, "init_args": init_args})


def test_sigint_saves_checkpoint_and_resume_continues_from_its_step(embedded_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    with pytest.raises(TrainingInterrupted) as e:
        run_cli(_args(embedded_root, _callback("tests.test_interrupt.SignalAt", step=2, signum=int(signal.SIGINT))))
    ckpt = tmp_path / "runs/vivit_factorised/version_0/checkpoints/last.ckpt"
    assert e.value.checkpoint == ckpt and e.value.exit_code == 130
    assert "interrupted by SIGINT at step 3" in e.value.message
    assert f"vt fit --config {CONFIG}" in e.value.message and f"--ckpt_path {ckpt}" in e.value.message
    saved = torch.load(ckpt, weights_only=True)  # our own checkpoints stay weights-only loadable
    assert saved["global_step"] == 3  # the batch in flight when the signal came was finished, then saved
    # a stopped run gives the signals back (or leaves a handler that acts as the original)
    assert all(signal.getsignal(s) in (before[s], signal.SIG_DFL) or callable(signal.getsignal(s)) for s in before)

    FirstStep.seen.clear()
    cli = run_cli([*_args(embedded_root, _callback("tests.test_interrupt.FirstStep")), "--ckpt_path", str(ckpt)])
    assert FirstStep.seen[0] == 3 and cli.trainer.global_step == 5  # continued at step 3, not from 0, not past 5
    assert cli.trainer.optimizers[0].state_dict()["state"][0]["step"] == 5  # optimizer state came back too


def test_sigterm_in_a_real_vt_process_exits_143_with_resume_command(embedded_root, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-c",
        "from video_transformers.cli import main; main()",
        *_args(embedded_root, _callback("tests.test_interrupt.SignalAt", step=1)),
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    ckpt = tmp_path / "runs/vivit_factorised/version_0/checkpoints/last.ckpt"
    assert proc.returncode == 143, proc.stderr[-3000:]
    assert "interrupted by SIGTERM at step 2" in proc.stderr and "Resume with:" in proc.stderr
    assert f"--ckpt_path {ckpt}" in proc.stderr
    assert torch.load(ckpt, weights_only=True)["global_step"] == 2


def test_sigusr1_saves_last_and_ends_fit_cleanly(embedded_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = run_cli(_args(embedded_root, _callback("tests.test_interrupt.SignalAt", step=1, signum=int(signal.SIGUSR1))))
    ckpt = tmp_path / "runs/vivit_factorised/version_0/checkpoints/last.ckpt"
    assert cli.trainer.global_step == 2  # the batch in flight finished, then fit stopped (no exception)
    assert torch.load(ckpt, weights_only=True)["global_step"] == 2


class Slow(L.Callback):
    """Writes the step reached to ``path`` and slows training down, so a signal can arrive mid-epoch."""

    def __init__(self, path: str, seconds: float = 0.5) -> None:
        self.path, self.seconds = path, seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        with open(self.path, "a") as f:
            f.write(f"{trainer.global_step}\n")
        time.sleep(self.seconds)


def test_sigterm_to_the_process_group_with_loader_workers_saves_and_resumes(embedded_root, tmp_path, monkeypatch):
    """As SLURM, `timeout` and Kubernetes send it: to every process of the group, the loader workers included."""
    steps = tmp_path / "steps.txt"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    workers = ["--data.num_workers", "2", "--trainer.limit_train_batches", "6"]
    args = [*_args(embedded_root, _callback("tests.test_interrupt.Slow", path=str(steps))), *workers]
    cmd = [sys.executable, "-m", "video_transformers.cli", *args]
    log = tmp_path / "vt.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, start_new_session=True, stdout=out, stderr=out)
        deadline = time.monotonic() + 300
        while not (steps.is_file() and len(steps.read_text().split()) >= 2):  # two steps done: mid-epoch
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        assert len(_children(proc.pid)) >= 2, "expected the loader workers in the process group"
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=120)
    err = log.read_text()
    ckpt = tmp_path / "runs/vivit_factorised/version_0/checkpoints/last.ckpt"
    assert proc.returncode == 143, err[-3000:]
    assert "killed by signal" not in err and "Resume with:" in err and f"--ckpt_path {ckpt}" in err
    saved = torch.load(ckpt, weights_only=True)["global_step"]
    assert 2 <= saved < 6

    FirstStep.seen.clear()
    monkeypatch.chdir(tmp_path)
    resume = [*_args(embedded_root, _callback("tests.test_interrupt.FirstStep")), *workers, "--ckpt_path", "last"]
    resumed = run_cli(resume)
    assert FirstStep.seen[0] == saved and resumed.trainer.global_step == 6  # the step counter continued


def _children(pid: int) -> list[int]:
    import psutil

    return [c.pid for c in psutil.Process(pid).children(recursive=True)]
