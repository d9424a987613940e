"""Stopping ``vt fit`` on SIGTERM / SIGINT without losing work.

:class:`GracefulInterrupt` (installed by ``vt fit``) turns the first SIGTERM or SIGINT into a request:
the current training batch finishes, a resumable checkpoint is written (atomically, through the
trainer's checkpoint plugin) at the point Lightning's own mid-epoch checkpoints are taken
(``on_train_batch_end``), and :class:`TrainingInterrupted` ends the run with a message naming the
checkpoint and the command that resumes from it. A second SIGINT stops at once (``KeyboardInterrupt``).

Lightning's own SIGTERM handler would stop the run without a checkpoint (and with exit status 0), so it
is replaced while training runs; SIGUSR1 (preemption, SLURM requeue) is left to other callbacks.
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

SIGNALS = (signal.SIGTERM, signal.SIGINT)


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
    """Save ``<dirpath>/<filename>`` and stop on SIGTERM / SIGINT (see the module docstring).

    Args:
        dirpath: where to save; default: the ``ModelCheckpoint`` folder, else ``<default_root_dir>/checkpoints``.
        filename: the checkpoint's file name.
        argv: the ``vt`` arguments of this run, for the resume command in the message.
    """

    def __init__(
        self, *, dirpath: str | None = None, filename: str = "interrupted.ckpt", argv: list[str] | None = None
    ):
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
        elif self.received is None:
            self.received = signum
            rank_zero_info(
                f"Received {signal.Signals(signum).name}: finishing this batch, then saving a checkpoint"
                " (Ctrl+C again to stop at once)"
            )

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
        for signum in SIGNALS:
            current = signal.getsignal(signum)
            if current != self._handler:  # bound methods compare equal, not identical
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
            self._install()  # before data-loader workers fork, so they inherit a handler that only sets a flag

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()  # take SIGTERM back from Lightning's handler, registered after setup

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        stop = self.received is not None
        if trainer.world_size > 1:  # every rank stops at the same step, and all join the save
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if not stop:
            return
        signum = self.received or signal.SIGTERM
        path = self._path(trainer)
        trainer.save_checkpoint(path)
        self.checkpoint = path
        name = signal.Signals(signum).name
        raise TrainingInterrupted(
            f"vt fit: interrupted by {name} at step {trainer.global_step} (epoch {trainer.current_epoch}); saved a"
            f" resumable checkpoint to {path}\nResume with:\n  {resume_command(self.argv, path)}",
            signum=signum,
            checkpoint=path,
        )

    def _path(self, trainer: L.Trainer) -> Path:
        folder = self.dirpath
        if folder is None and trainer.checkpoint_callback is not None:
            folder = getattr(trainer.checkpoint_callback, "dirpath", None)
        return Path(folder or Path(trainer.default_root_dir) / "checkpoints") / self.filename

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            if self.received is not None and self.checkpoint is None:
                rank_zero_info(
                    f"{signal.Signals(self.received).name} arrived after the last training batch; nothing to save"
                )
            self._restore()
