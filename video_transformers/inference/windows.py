"""Scoring sliding windows over a long video, with streaming reuse for ViViT's factorised encoder.

:class:`ClipWindowScorer` runs the whole model on every window (batched). :class:`FactorisedEncoderStream`
exploits ViViT Model 2's factorisation (Arnab et al. 2021, section 3.3, Fig. 4): the spatial encoder sees
one tubelet at a time (its position embedding is spatial only), so a tubelet's spatial CLS feature is the
same in every window that contains it. Each tubelet is encoded once by ``forward_spatial``; only the small
temporal encoder (``forward_temporal``) and the head run per window. With a stride of ``s`` tubelets and
``t`` tubelets per window, the spatial work drops by a factor ``t / s``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from video_transformers.data.errors import VideoDataError
from video_transformers.inference.clips import ShortVideo, Window, iter_windows, make_window, pad_frames
from video_transformers.inference.loading import ClipSpec, LoadedModel

log = logging.getLogger(__name__)


def supports_streaming(model: torch.nn.Module) -> bool:
    """Whether the model encodes each tubelet alone (``forward_spatial``), so windows can share its features."""
    return bool(getattr(model, "supports_streaming", False))


def stream_multiple(model: torch.nn.Module) -> int:
    """Strides must be a multiple of this many grid frames for windows to share tubelets."""
    return model.patch_embed.tubelet_size if supports_streaming(model) else 1


class ClipWindowScorer:
    """Whole-model logits for every window, ``batch_size`` windows per forward pass."""

    def __init__(self, lm: LoadedModel, batch_size: int = 8) -> None:
        self.lm, self.batch_size = lm, batch_size

    def run(
        self, frames: Iterator[torch.Tensor], stride: int, path: Path, short_video: ShortVideo = "pad"
    ) -> Iterator[tuple[Window, torch.Tensor]]:
        batch: list[tuple[Window, torch.Tensor]] = []
        for item in iter_windows(frames, self.lm.spec, stride, path, short_video):
            batch.append(item)
            if len(batch) == self.batch_size:
                yield from self._flush(batch)
        yield from self._flush(batch)

    def _flush(self, batch: list[tuple[Window, torch.Tensor]]) -> Iterator[tuple[Window, torch.Tensor]]:
        if batch:
            logits = self.lm.logits(torch.stack([clip for _, clip in batch]))
            yield from zip([w for w, _ in batch], logits, strict=True)
            batch.clear()


class FactorisedEncoderStream:
    """Windows scored from cached per-tubelet spatial features (ViViT Model 2 only).

    Tubelet ``k`` is grid frames ``k*ts .. k*ts + ts - 1``; windows start on tubelet boundaries (the stride
    is a multiple of ``ts``). New tubelets are packed ``t`` to a clip and encoded by ``forward_spatial``
    (``batch_size`` clips per pass); features are dropped once no later window needs them.
    """

    def __init__(self, lm: LoadedModel, batch_size: int = 8) -> None:
        if not supports_streaming(lm.model):
            raise TypeError(
                f"streaming reuse needs a model that supports it (ViViT Model 2), got {type(lm.model).__name__}"
            )
        self.lm, self.batch_size = lm, batch_size
        self.model = lm.model
        self.ts = self.model.patch_embed.tubelet_size
        self.t = lm.spec.num_frames // self.ts
        self.spatial_calls = 0  # tubelets encoded (for tests and reports)

    @torch.no_grad()
    def _encode(self, tubelets: list[torch.Tensor]) -> torch.Tensor:
        """``[(C, ts, S, S)] * k`` -> ``(k, D)`` spatial CLS features, ``t`` tubelets packed per clip."""
        k, t = len(tubelets), self.t
        padded = tubelets + [tubelets[-1]] * (-k % t)  # fill the last clip; the extra outputs are dropped
        clips = torch.stack([torch.cat(padded[i : i + t], dim=1) for i in range(0, len(padded), t)])
        feats = self.model.forward_spatial(clips.to(self.lm.device))  # b t d
        self.spatial_calls += k
        return feats.flatten(0, 1)[:k]

    @torch.no_grad()
    def _temporal(self, feats: torch.Tensor) -> torch.Tensor:
        """``(B, t, D)`` cached features -> ``(B, num_classes)`` logits."""
        return self.model.forward_head(self.model.forward_temporal(feats)).float().cpu()

    def run(
        self, frames: Iterator[torch.Tensor], stride: int, path: Path, short_video: ShortVideo = "pad"
    ) -> Iterator[tuple[Window, torch.Tensor]]:
        spec: ClipSpec = self.lm.spec
        if stride % self.ts:
            raise ValueError(f"streaming stride {stride} grid frames is not a multiple of the tubelet size {self.ts}")
        state = _StreamState(step=stride // self.ts)
        current: list[torch.Tensor] = []  # frames of the tubelet being filled
        head: list[torch.Tensor] = []  # the first frames, kept only while a video may be too short
        seen = 0
        for x in frames:
            seen += 1
            if seen <= spec.num_frames:
                head.append(x)
            current.append(x)
            if len(current) == self.ts:
                state.pending.append(torch.stack(current, dim=1))
                current = []
                if len(state.pending) >= self.t * self.batch_size:
                    self._flush_spatial(state)
                    yield from self._ready_windows(state, final=False)
        self._flush_spatial(state)
        yield from self._ready_windows(state, final=True)
        if state.next_window == 0:  # shorter than one window: pad and run the whole model once
            if seen == 0:
                raise VideoDataError(f"{path}: decoded 0 frames")
            why = f"video gives {seen} sampled frames but a window needs {spec.num_frames} ({spec.clip_duration:.2f}s)"
            clip = pad_frames(torch.stack(head, dim=1), spec.num_frames, path, short_video, why)
            yield make_window(0, 0, spec), self.lm.logits(clip[None])[0]

    def _flush_spatial(self, state: _StreamState) -> None:
        """Encode the pending tubelets into ``state.feats``."""
        if state.pending:
            for f in self._encode(state.pending):
                state.feats[state.encoded] = f
                state.encoded += 1
            state.pending.clear()

    def _ready_windows(self, state: _StreamState, final: bool) -> Iterator[tuple[Window, torch.Tensor]]:
        """Score the windows whose tubelets are all encoded, ``batch_size`` at a time (all of them when
        ``final``), then drop the features no later window needs."""
        while state.next_window * state.step + self.t <= state.encoded:
            first_tubelet = state.next_window * state.step
            state.ready.append(make_window(state.next_window, first_tubelet * self.ts, self.lm.spec))
            state.next_window += 1
        ready = state.ready
        while ready and (len(ready) >= self.batch_size or final):
            batch, ready[:] = ready[: self.batch_size], ready[self.batch_size :]
            x = torch.stack([torch.stack([state.feats[w.first // self.ts + i] for i in range(self.t)]) for w in batch])
            yield from zip(batch, self._temporal(x), strict=True)
        oldest = ready[0].first // self.ts if ready else state.next_window * state.step  # first tubelet still needed
        for k in [k for k in state.feats if k < oldest]:
            del state.feats[k]


@dataclass
class _StreamState:
    """One video's progress through :meth:`FactorisedEncoderStream.run`."""

    step: int  # tubelets between window starts
    pending: list[torch.Tensor] = field(default_factory=list)  # complete tubelets not yet encoded
    feats: dict[int, torch.Tensor] = field(default_factory=dict)  # tubelet index -> (D,) feature
    encoded: int = 0  # tubelets encoded so far
    next_window: int = 0
    ready: list[Window] = field(default_factory=list)  # windows whose tubelets are encoded, not yet scored


def window_scorer(
    lm: LoadedModel, *, stream: bool = True, batch_size: int = 8
) -> ClipWindowScorer | FactorisedEncoderStream:
    """The streaming scorer where the model allows it (and ``stream``), else the whole-model one."""
    if stream and supports_streaming(lm.model):
        return FactorisedEncoderStream(lm, batch_size)
    return ClipWindowScorer(lm, batch_size)
