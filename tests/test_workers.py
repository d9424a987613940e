"""Data-loader workers: they leave the process group's SIGTERM / SIGINT to the main process but obey their
parent, keep Lightning's per-rank seeding, and what torch's loader errors say is read in one place."""

from __future__ import annotations

import os
import random
import signal

import lightning as L
import pytest
from torch.utils.data import DataLoader, Dataset

from video_transformers.data.errors import VideoDataError
from video_transformers.data.inflight import InFlight, ReportingDataLoader, read_loader_error
from video_transformers.data.workers import WorkerInit


class _SignalsItself(Dataset):
    """Each item sends ``signum`` to its own worker (as a signal to the whole group reaches it), then returns."""

    def __init__(self, signum: int) -> None:
        self.signum = signum

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> int:
        os.kill(os.getpid(), self.signum)
        return i


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_workers_outlive_a_signal_to_the_group(signum):
    loader = ReportingDataLoader(
        _SignalsItself(signum), inflight=InFlight(), batch_size=2, num_workers=1, worker_init_fn=WorkerInit()
    )
    for _ in range(2):  # and again: the main process still takes SIGTERM itself between epochs
        assert [b.tolist() for b in loader] == [[0, 1], [2, 3]]
        assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    without = DataLoader(_SignalsItself(signal.SIGTERM), batch_size=2, num_workers=1)
    with pytest.raises(RuntimeError, match="DataLoader worker .*(killed by signal|exited unexpectedly)"):  # torch's
        list(without)


class _Draws(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> float:
        return random.random()


def test_lightning_worker_seeding_is_kept(monkeypatch):
    monkeypatch.setenv("PL_SEED_WORKERS", "1")

    def draws(rank: int) -> list[float]:
        L.seed_everything(7, workers=True, verbose=False)
        loader = DataLoader(_Draws(), batch_size=1, num_workers=2, worker_init_fn=WorkerInit(rank))
        return [float(x) for batch in loader for x in batch]

    assert draws(0) == draws(0) and draws(0) != draws(1)  # pl_worker_init_function mixes in the rank


class _Raises(Dataset):
    def __init__(self, message: str) -> None:
        self.message = message

    def __len__(self) -> int:
        return 1

    def __getitem__(self, i: int) -> int:
        raise VideoDataError(self.message)


@pytest.mark.parametrize("message", ["clip.mp4: cannot decode (EOF)", "2 videos are unusable:\n  a.mp4\n  b.mp4"])
def test_a_worker_error_is_read_from_torchs_message(message):
    with pytest.raises(VideoDataError) as err:
        list(DataLoader(_Raises(message), num_workers=1))
    assert str(err.value).startswith("Caught VideoDataError in DataLoader worker process 0")  # torch's wrapping
    assert read_loader_error(err.value) == ("raised", 0, message)
    assert read_loader_error(RuntimeError("DataLoader timed out after 3 seconds"))[0] == "timeout"
    assert read_loader_error(ValueError("something else")) is None
