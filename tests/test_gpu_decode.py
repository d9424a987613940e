"""``data.decoder: torchcodec_cuda``: torchcodec's NVDEC decoder on the rank's GPU, and its CPU fallback.

Without CUDA (this machine, CI) the data module warns once and decodes with torchcodec on the CPU: the same
frames as ``decoder: torchcodec``. With CUDA but no working NVDEC decode (a CPU-only torchcodec build), the
warning carries torchcodec's own error. On a GPU, frames decoded on ``cuda:$LOCAL_RANK`` equal the CPU's within
the YUV->RGB conversion's rounding.
"""

from __future__ import annotations

import importlib.util
import warnings

import pytest
import torch

from video_transformers.data import VideoDataModule
from video_transformers.data.video import _torchcodec_has_ffmpeg, decode_frames, resolve_decoder

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torchcodec") is None or not _torchcodec_has_ffmpeg(),
    reason="torchcodec with FFmpeg's libraries is needed (CI installs both; test_sampling fails without them)",
)


def _dm(root, decoder):
    return VideoDataModule(dataset="csv", root=str(root), decoder=decoder, num_workers=0, test_crops=1)


def test_without_cuda_falls_back_to_cpu_torchcodec_with_one_warning(embedded_root, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="torchcodec_cuda': CUDA is not available; decoding on the CPU") as caught:
        dm = _dm(embedded_root, "torchcodec_cuda")
    assert len([w for w in caught if "torchcodec_cuda" in str(w.message)]) == 1
    assert dm.decoder == "torchcodec" and dm.hparams.decoder == "torchcodec_cuda"
    reference = _dm(embedded_root, "torchcodec")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # setting up and decoding warn no more
        dm.setup("test")
        reference.setup("test")
        for i in (0, 7):
            assert torch.equal(
                dm.test_dataloader().dataset[i]["video"], reference.test_dataloader().dataset[i]["video"]
            )


def test_cuda_without_a_working_nvdec_decode_names_torchcodecs_error(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the real decode is tested below")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a driver is claimed, but none is there
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.warns(UserWarning, match=r"torchcodec cannot decode on cuda:0 \(\w+(Error|Exception)"):
        assert resolve_decoder("torchcodec_cuda") == "torchcodec"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU with NVDEC")
def test_cuda_decode_on_the_rank_gpu_matches_cpu(embedded_root, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert resolve_decoder("torchcodec_cuda") == "torchcodec_cuda"
    path = next(embedded_root.rglob("*.mp4"))
    gpu = decode_frames(path, [0, 5, 9], decoder="torchcodec_cuda")
    assert gpu.device == torch.device("cuda", 0)
    cpu = decode_frames(path, [0, 5, 9], decoder="torchcodec")
    assert (gpu.cpu().int() - cpu.int()).abs().float().mean() < 2.0  # NVDEC's colour conversion rounds differently
