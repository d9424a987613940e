"""Data-loader workers and the signals of the process group.

SLURM, ``timeout``, Kubernetes and Ctrl+C signal the whole process group. PyTorch's workers die of a SIGTERM
that does not come from their parent (torch/csrc/DataLoader.cpp, ``handler_SIGTERM``), the main process
then raises "DataLoader worker ... killed by signal" before it can save anything. So a worker leaves
SIGINT and SIGTERM to the main process (``lit/interrupt.py`` saves and stops), and still exits on the
SIGTERM its parent sends when it shuts the loader down, as PyTorch's own handler does:

* :func:`forking_workers`: the loader starts its workers with SIGTERM blocked, so every thread of a worker
  (those PyTorch or OpenMP start before ``worker_init_fn`` too) inherits the block;
* :class:`WorkerInit` (``worker_init_fn``): SIGINT ignored; one thread takes each SIGTERM with
  ``sigwaitinfo`` and exits only when the parent sent it.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from lightning.fabric.utilities.seed import pl_worker_init_function


@contextmanager
def forking_workers() -> Iterator[None]:
    """Block SIGTERM in the calling thread while it forks loader workers (a SIGTERM that arrives meanwhile is
    delivered when the block is lifted)."""
    if not hasattr(signal, "sigwaitinfo") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def leave_group_signals_to_the_main_process() -> None:
    """In a loader worker: ignore SIGINT; ignore SIGTERM unless the parent sends it (then exit at once)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not hasattr(signal, "sigwaitinfo"):  # no sender information (macOS): the main process ends us otherwise
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return
    parent = os.getppid()
    # Blocked in every thread of a worker that forking_workers started (and here again, for other loaders'
    # workers: then only threads started from now on inherit it), SIGTERM reaches only the waiter below.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def wait() -> None:
        while True:
            if signal.sigwaitinfo({signal.SIGTERM}).si_pid == parent:
                os._exit(0)  # the loader shutting this worker down (torch's handler_SIGTERM does the same)

    threading.Thread(target=wait, name="vt-worker-sigterm", daemon=True).start()


class WorkerInit:
    """``worker_init_fn`` of ``vt``'s loaders: the signal policy above, then Lightning's worker seeding when
    ``seed_everything(workers=True)`` asked for it (Lightning adds that only to loaders without one)."""

    def __init__(self, rank: int = 0) -> None:
        self.rank = rank

    def __call__(self, worker_id: int) -> None:
        leave_group_signals_to_the_main_process()
        if int(os.environ.get("PL_SEED_WORKERS", 0)):
            pl_worker_init_function(worker_id, rank=self.rank)
