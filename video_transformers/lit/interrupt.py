"""Stopping ``vt fit`` on a signal without losing work: SIGTERM, SIGINT and SIGUSR1 in one place.

SLURM, ``timeout``, Kubernetes and Ctrl+C in a terminal signal every process of the group; the data-loader
workers leave SIGTERM / SIGINT to the main process (``data.datamodule.ignore_group_signals``), where
:class:`GracefulInterrupt` turns the first signal into a request: the current training batch finishes, then
``last.ckpt`` is written (atomically, through the trainer's checkpoint plugin) in the checkpoint folder, at
the point Lightning's own mid-epoch checkpoints are taken (``on_train_batch_end``), so ``--ckpt_path last``
resumes from it. Then

* SIGTERM / SIGINT: :class:`TrainingInterrupted` ends the run with a message naming the checkpoint and the
  command that resumes from it; ``vt`` exits with 128 + the signal number, as a shell reports it. A second
  SIGINT stops at once (``KeyboardInterrupt``).
* SIGUSR1 (a preemption notice, e.g. SLURM ``--signal=USR1@120``): ``fit`` ends cleanly (exit status 0), for
  a requeued job to resume. When Lightning's SLURM auto-requeue owns SIGUSR1, its handler is left in place.

Lightning's own SIGTERM handler would stop the run without a checkpoint (and with exit status 0), so it is
replaced while training runs.
"""

from __future__ import annotations

import os
import shlex
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info

from video_transformers.lit.runs import output_dir

STOP = (signal.SIGTERM, signal.SIGINT)
PREEMPT = (signal.SIGUSR1,) if hasattr(signal, "SIGUSR1") else ()


class TrainingInterrupted(SystemExit):
    """Training stopped on a signal after saving ``checkpoint``; uncaught, the message is printed and the
    process exits with status 1 (``vt`` exits with 128 + the signal number, as a shell reports it)."""

    def __init__(self, message: str, *, signum: int, checkpoint: Path | None) -> None:
        super().__init__(message)
        self.message, self.signum, self.checkpoint = message, signum, checkpoint
        self.exit_code = 128 + signum


def resume_command(argv: list[str] | None, checkpoint: Path) -> str:
    """``vt <argv without --ckpt_path> --ckpt_path <checkpoint>``, shell-quoted."""
    args, skip = [], False
    for a in argv or ["fit", "--config", "<your config>"]:
        if skip:
            skip = False
        elif a == "--ckpt_path":
            skip = True
        elif not a.startswith("--ckpt_path="):
            args.append(a)
    return shlex.join(["vt", *args, "--ckpt_path", str(checkpoint)])


class GracefulInterrupt(Callback):
    """Save ``<dirpath>/<filename>`` and stop on SIGTERM / SIGINT / SIGUSR1 (see the module docstring).

    Args:
        dirpath: where to save; default: the checkpoint folder (``ModelCheckpoint``'s, else
            ``<default_root_dir>/checkpoints``).
        filename: the checkpoint's file name: ``last.ckpt``, the file ``--ckpt_path last`` resumes from.
        argv: the ``vt`` arguments of this run, for the resume command in the message.
    """

    def __init__(self, *, dirpath: str | None = None, filename: str = "last.ckpt", argv: list[str] | None = None):
        self.dirpath, self.filename, self.argv = dirpath, filename, argv
        self.received: int | None = None
        self.checkpoint: Path | None = None
        self._previous: dict[int, Any] = {}
        self._active = False

    # -- signal handling ----------------------------------------------------------------------------
    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if not self._active:  # left installed by someone restoring handlers after us: act as the original
            self._delegate(signum, frame)
        elif self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl+C: stop now, without a checkpoint
        elif self.received is None or (self.received in PREEMPT and signum in STOP):
            self.received = signum  # a SIGTERM after the preemption notice: still save, but exit non-zero
            then = "then stopping" if signum in PREEMPT else "(Ctrl+C again to stop at once)"
            rank_zero_info(f"Received {signal.Signals(signum).name}: finishing this batch, saving a checkpoint, {then}")

    def _delegate(self, signum: int, frame: FrameType | None) -> None:
        original = self._previous.get(signum, signal.SIG_DFL)
        if callable(original) and original is not self._handler:
            original(signum, frame)
        elif original in (signal.SIG_DFL, None):
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        self._active = True
        for signum in STOP + PREEMPT:
            current = signal.getsignal(signum)
            if current == self._handler:  # bound methods compare equal, not identical
                continue
            stale = getattr(current, "__self__", None)
            if isinstance(stale, GracefulInterrupt):  # an earlier run's, put back by Lightning's teardown
                current = stale._previous.get(signum, signal.SIG_DFL)
            if signum in PREEMPT and current not in (signal.SIG_DFL, signal.SIG_IGN, None):
                continue  # SIGUSR1 belongs to someone else (Lightning's SLURM requeue): leave it to them
            self._previous.setdefault(signum, current)
            signal.signal(signum, self._handler)

    def _restore(self) -> None:
        self._active = False
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, original in self._previous.items():
            if signal.getsignal(signum) == self._handler:
                signal.signal(signum, original if original is not None else signal.SIG_DFL)
        # _previous is kept: Lightning may put this handler back after an exception, and it then delegates

    # -- hooks --------------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.received, self.checkpoint = None, None
            self._install()

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()  # take SIGTERM back from Lightning's handler, registered after setup

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        stop = self.received is not None
        if trainer.world_size > 1:  # every rank stops at the same step, and all join the save
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        signum = self.received or signal.SIGTERM
        if not stop or (signum in PREEMPT and self.checkpoint is not None):  # saved; Lightning is stopping
            return
        path = self._path(trainer)
        trainer.save_checkpoint(path)  # collective: every rank calls it, rank 0 writes
        self.checkpoint = path
        name = signal.Signals(signum).name
        where = f"at step {trainer.global_step} (epoch {trainer.current_epoch}); saved a resumable checkpoint to {path}"
        if signum in PREEMPT:
            rank_zero_info(f"{name} {where}; resume with --ckpt_path last")
            trainer.should_stop = True
            return
        raise TrainingInterrupted(
            f"vt fit: interrupted by {name} {where}\nResume with:\n  {resume_command(self.argv, path)}",
            signum=signum,
            checkpoint=path,
        )

    def _path(self, trainer: L.Trainer) -> Path:
        return Path(self.dirpath or output_dir(trainer, "fit")) / self.filename

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            if self.received is not None and self.checkpoint is None:
                rank_zero_info(
                    f"{signal.Signals(self.received).name} arrived after the last training batch; nothing to save"
                )
            self._restore()
