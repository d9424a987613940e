"""Benchmark every registered variant: parameters, GFLOPs, inference and training throughput, peak memory,
achieved GFLOP/s against this machine's dense matmul rate, fp32 and bf16 autocast; and ours vs Hugging Face
``TimesformerForVideoClassification`` / ``VivitForVideoClassification`` with the same weights and input.

    python benchmarks/bench_models.py            # full run (make bench), < 20 min on 2 CPU cores
    python benchmarks/bench_models.py --quick    # smaller inputs, fewer repeats, no paper-size pass
    python benchmarks/bench_models.py --models 'vivit_*' --batch 1

Each (model, input size) is measured in its own subprocess so peak memory is not polluted by an earlier
model; inside it, each (implementation, dtype, mode) resets the peak first (CPU: ``/proc/self/clear_refs``
after ``malloc_trim``, then ``VmHWM``; GPU: ``torch.cuda.reset_peak_memory_stats``). Times are medians of
``--repeats`` runs after ``--warmup``. See docs/performance.md for how to read the table.
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DTYPES = ("fp32", "bf16")
MODES = ("infer", "train")
HF_KINDS = ("timesformer", "timesformer_joint", "vivit")
HF_TIMESFORMER = {  # kind -> (our registered name, HF attention_type)
    "timesformer": ("timesformer_base_divided_8x224", "divided_space_time"),
    "timesformer_joint": ("timesformer_base_joint_8x224", "joint_space_time"),
}
# Paper-size comparisons, each at the size and in the mode the performance goals name: divided TimeSformer-B
# inference, joint space-time TimeSformer-B training (1569 tokens), ViViT-B Model 1 training (3137 tokens).
HF_PAPER = {
    "timesformer": dict(num_frames=8, img_size=224, modes=["infer"], dtypes=["fp32", "bf16"]),
    "timesformer_joint": dict(num_frames=8, img_size=224, modes=["train"], dtypes=["fp32"]),
    "vivit": dict(num_frames=32, img_size=224, modes=["train"], dtypes=["fp32"]),
}


# -- measurement primitives ------------------------------------------------------------------------------
class PeakMemory:
    """Peak memory above the level at :meth:`reset`, in bytes (CPU: resident set; GPU: allocated)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._libc = ctypes.CDLL("libc.so.6") if device.type == "cpu" and sys.platform == "linux" else None

    @staticmethod
    def _status_kb(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"/proc/self/status has no {field}")

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return
        if self._libc is None:
            raise RuntimeError("peak-memory measurement on CPU needs Linux (/proc/self/clear_refs)")
        self._libc.malloc_trim(0)  # return freed heap to the OS so the baseline is what is live now
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM (peak RSS) to the current RSS
        self.base = self._status_kb("VmRSS")

    def peak(self) -> int:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - self.base
        return self._status_kb("VmHWM") - self.base


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, warmup: int, repeats: int) -> list[float]:  # noqa: ANN001
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def matmul_gflops(device: torch.device, dtype: torch.dtype, n: int = 4096, repeats: int = 3) -> float:
    """Dense ``n x n`` matmul rate (GFLOP/s, 2 n^3 FLOPs per product): the machine's practical peak."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    times = timed(lambda: torch.mm(a, b), device, warmup=1, repeats=repeats)
    return 2 * n**3 / statistics.median(times) / 1e9


# -- models ----------------------------------------------------------------------------------------------
def _hf_pair(kind: str, num_frames: int, img_size: int) -> tuple[torch.nn.Module, torch.nn.Module, str, str]:
    """(ours, theirs, our registered name, weights note) for the Hugging Face comparison of ``kind``."""
    import transformers

    from video_transformers.models import create_model

    base = dict(
        image_size=img_size,
        num_frames=num_frames,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        num_labels=400,
    )
    if kind in HF_TIMESFORMER:
        from video_transformers.pretrained import timesformer as conv

        name, attention_type = HF_TIMESFORMER[kind]
        theirs = transformers.TimesformerForVideoClassification(
            transformers.TimesformerConfig(patch_size=16, attention_type=attention_type, **base)
        )
        ours = create_model(name, **conv.hf_config_to_kwargs(theirs.config.to_dict()))
        state = conv.convert_hf(theirs.state_dict())
    elif kind == "vivit":
        from video_transformers.pretrained import vivit as conv

        name = "vivit_base_spatio_temporal_16x2"
        theirs = transformers.VivitForVideoClassification(transformers.VivitConfig(tubelet_size=[2, 16, 16], **base))
        ours = create_model(name, **conv.hf_model_kwargs(theirs.config.to_dict()))
        state = conv.convert_hf_vivit(theirs.state_dict())
    else:
        raise ValueError(f"unknown Hugging Face comparison {kind!r}; expected timesformer or vivit")
    w = state.get("patch_embed.proj.weight")
    if w is not None and w.ndim == 4 and ours.patch_embed.proj.weight.ndim == 5:
        state["patch_embed.proj.weight"] = w.unsqueeze(2)  # HF TimeSformer's 2D patch kernel = a 1-frame tubelet
    missing, unexpected = ours.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"{kind}: converted Hugging Face weights do not fit {name}: {missing=} {unexpected=}")
    via = conv.__name__.removeprefix("video_transformers.")
    note = f"same (HF {type(theirs).__name__} -> ours via {via}, attn={theirs.config._attn_implementation})"
    return ours, theirs, name, note


def _flops(model: torch.nn.Module, shape: tuple[int, ...], backward: bool) -> int:
    """FLOPs of one forward (+ backward of the summed logits) at ``shape``, counted on a meta copy of ``model``."""
    from video_transformers.utils.profile import count_flops

    meta = copy.deepcopy(model).to("meta")
    return count_flops(meta, torch.empty(shape, device="meta"), backward=backward).flops


# -- worker: one (model, input size) in its own process -------------------------------------------------
def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    from video_transformers.models import create_model
    from video_transformers.utils.profile import count_params, video_input_shape

    torch.manual_seed(0)
    weights = "-"
    if spec.get("hf"):
        ours, theirs, name, weights = _hf_pair(spec["hf"], spec["num_frames"], spec["img_size"])
        impls = {"ours": ours, "HF": theirs}
    else:
        name = spec["name"]
        impls = {"ours": create_model(name, **spec["overrides"])}
    ours = impls["ours"]
    shape = video_input_shape(ours, spec["batch"])
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)
    inputs = {"ours": x, "HF": x.transpose(1, 2).contiguous()}  # HF takes (B, T, C, H, W)
    labels = torch.randint(0, ours.num_classes, (shape[0],), generator=torch.Generator().manual_seed(1)).to(device)
    for m in impls.values():
        m.to(device)

    def logits(impl: str) -> torch.Tensor:
        m = impls[impl]
        return m(inputs[impl]) if impl == "ours" else m(pixel_values=inputs[impl]).logits

    result: dict[str, Any] = {
        "name": name,
        "input": list(shape),
        "params": count_params(ours),
        "flops_fwd": _flops(ours, shape, backward=False),
        "flops_train": _flops(ours, shape, backward=True),
        "weights": weights,
        "rows": [],
    }
    if "HF" in impls:
        with torch.no_grad():
            for m in impls.values():
                m.eval()
            a, b = logits("ours"), logits("HF")
        result["max_abs_logit_diff"] = float((a - b).abs().max())
    peak = PeakMemory(device)
    for dtype in spec["dtypes"]:
        bf16 = dtype == "bf16"
        for mode in spec["modes"]:
            for impl, model in impls.items():
                if mode == "infer":
                    model.eval()

                    def step(impl: str = impl, bf16: bool = bf16) -> None:
                        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                            logits(impl)
                else:
                    model.train()
                    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, fused=True)  # one kernel per step, CPU and GPU

                    def step(impl: str = impl, opt: torch.optim.Optimizer = opt, bf16: bool = bf16) -> None:
                        opt.zero_grad(set_to_none=True)
                        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                            loss = F.cross_entropy(logits(impl).float(), labels)
                        loss.backward()
                        opt.step()

                peak.reset()
                times = timed(step, device, spec["warmup"], spec["repeats"])
                result["rows"].append(
                    dict(
                        impl=impl,
                        dtype=dtype,
                        mode=mode,
                        times=times,
                        median_s=statistics.median(times),
                        peak_bytes=peak.peak(),
                    )  # fmt: skip
                )
                if mode == "train":
                    del opt
                    for p in model.parameters():
                        p.grad = None
    return result


# -- orchestration ---------------------------------------------------------------------------------------
def machine_name(device: torch.device) -> str:
    if device.type == "cuda":
        label = torch.cuda.get_device_name()
    else:
        label = platform.processor() or platform.machine()
        cpuinfo = Path("/proc/cpuinfo")
        if cpuinfo.is_file():
            m = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M)
            label = m.group(1) if m else label
        label = f"{label} {os.cpu_count()}cpu"
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def _small_size(name: str, num_frames: int, target: int) -> int:
    """The crop side nearest ``target`` that is a multiple of twice the patch size (an even token grid, which
    local/windowed schemes need) and that builds (checked on the meta device)."""
    from video_transformers.models import get_entry
    from video_transformers.utils.profile import build_model

    patch = get_entry(name).defaults.get("patch_size", 16)
    step = 2 * patch
    base = max(step, round(target / step) * step)
    for size in (base, base + step, target):
        try:
            build_model(name, device="meta", num_frames=num_frames, img_size=size)
            return size
        except (ValueError, RuntimeError):
            continue
    return target  # the worker reports the model's own error for this size


def plan(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Worker specs: each distinct variant at the small size, then paper sizes that fit the budget, then HF."""
    from video_transformers.models import get_entry, list_models
    from video_transformers.utils.profile import profile_model

    common = dict(
        batch=args.batch, warmup=args.warmup, repeats=args.repeats, dtypes=list(args.dtypes), modes=list(MODES),
        device=args.device, threads=args.threads,
    )  # fmt: skip
    specs, seen = [], {}
    names = [n for pattern in args.models for n in list_models(pattern)]
    for name in dict.fromkeys(names):
        entry = get_entry(name)
        overrides = dict(num_frames=args.num_frames, img_size=_small_size(name, args.num_frames, args.img_size))
        arch = {**entry.defaults, **overrides, "cls": entry.cls.__name__}
        key = json.dumps(arch, sort_keys=True, default=str)
        if key in seen:
            print(f"skip {name} at the small size: same architecture as {seen[key]}", file=sys.stderr)
            continue
        seen[key] = name
        specs.append(dict(common, name=name, overrides=overrides, size="small"))
    if args.paper_max_gflops > 0:
        for name in dict.fromkeys(names):
            gflops = profile_model(name).gflops
            if gflops <= args.paper_max_gflops:
                specs.append(dict(common, name=name, overrides={}, size="paper", batch=1, modes=["infer"],
                                  repeats=args.repeats))  # fmt: skip
            else:
                print(f"skip {name} at paper size: {gflops:.0f} GFLOPs > --paper_max_gflops", file=sys.stderr)
    for kind in args.hf:
        specs.append(dict(common, name=f"hf:{kind}", hf=kind, num_frames=args.num_frames, img_size=args.img_size,
                          overrides={}, size="small"))  # fmt: skip
    for kind in args.hf_paper:
        paper = dict(HF_PAPER[kind], dtypes=[d for d in HF_PAPER[kind]["dtypes"] if d in args.dtypes])
        specs.append(dict(common, name=f"hf:{kind}", hf=kind, overrides={}, size="paper", batch=1, **paper))
    return specs


def run_spec(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    out = Path(f.name + ".out")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", f.name, "--worker_out", str(out)],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no stderr"])[-1].replace("|", "/")  # one table cell
            return dict(spec=spec, error=f"worker exited {proc.returncode}: {tail}")
        result = json.loads(out.read_text())
    except subprocess.TimeoutExpired:
        return dict(spec=spec, error=f"timed out after {timeout:.0f}s")
    finally:
        Path(f.name).unlink(missing_ok=True)
        out.unlink(missing_ok=True)
    result.update(spec=spec, wall_s=time.perf_counter() - t0)
    return result


# -- report ----------------------------------------------------------------------------------------------
def _row(result: dict[str, Any], impl: str, dtype: str, mode: str) -> dict[str, Any] | None:
    return next((r for r in result.get("rows", []) if (r["impl"], r["dtype"], r["mode"]) == (impl, dtype, mode)), None)


def _cell(value: float | None, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def report(results: list[dict[str, Any]], peaks: dict[str, float], meta: dict[str, Any]) -> str:
    lines = [
        f"# Benchmark: {meta['machine']}",
        "",
        f"{meta['date']}; torch {meta['torch']}; device {meta['device']}; {meta['threads']} threads; "
        f"{meta['args']}; wall {meta['wall_min']:.1f} min.",
        f"Load average (1/5/15 min) at start {meta['load_start']}, at end {meta['load_end']} "
        "(other processes on the machine slow and distort these numbers).",
        "",
        f"Dense 4096x4096 matmul: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s "
        "(the '% mm' columns divide achieved rates by these).",
        "",
        "GMACs/clip: multiply-adds per clip (the papers' 'GFLOPs'). clips/s: batch / median step time. "
        "Achieved GFLOP/s counts 2 FLOPs per multiply-add (forward, or forward + backward for training). "
        "Peak MiB: peak memory above the level before the step (model and input already resident; "
        "training includes gradients and AdamW state).",
        "",
    ]
    for dtype in DTYPES:
        if not any(_row(r, "ours", dtype, "infer") for r in results):
            continue
        lines += [
            f"## {dtype}" + (" (torch.autocast bfloat16)" if dtype == "bf16" else ""),
            "",
            "| model | size | input BxCxTxHxW | params (M) | GMACs/clip | infer clips/s | infer GFLOP/s (% mm) "
            "| infer peak MiB | train clips/s | train GFLOP/s (% mm) | train peak MiB |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for res in results:
            spec = res["spec"]
            if spec.get("hf"):
                continue
            if "error" in res:
                lines.append(f"| {spec['name']} | {spec['size']} | error: {res['error']} |" + " |" * 8)
                continue
            batch = res["input"][0]
            cells = [spec["name"], spec["size"], "x".join(map(str, res["input"])), f"{res['params'] / 1e6:.1f}",
                     f"{res['flops_fwd'] / 2 / batch / 1e9:.2f}"]  # fmt: skip
            for mode, flops in (("infer", res["flops_fwd"]), ("train", res["flops_train"])):
                row = _row(res, "ours", dtype, mode)
                if row is None:
                    cells += ["-", "-", "-"]
                    continue
                rate = flops / row["median_s"] / 1e9
                cells += [f"{batch / row['median_s']:.2f}", f"{rate:.0f} ({100 * rate / peaks[dtype]:.0f}%)",
                          f"{row['peak_bytes'] / 2**20:.0f}"]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    hf = [r for r in results if r["spec"].get("hf")]
    if hf:
        lines += [
            "## Ours vs Hugging Face transformers (same process, same input; ratios are ours / theirs)",
            "",
            "| model | input | weights | max abs logit diff | dtype | mode | ours s/step | HF s/step | time ratio "
            "| ours peak MiB | HF peak MiB | memory ratio |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for res in hf:
            if "error" in res:
                lines.append(f"| {res['spec']['name']} | error: {res['error']} |" + " |" * 10)
                continue
            for dtype in DTYPES:
                for mode in MODES:
                    a, b = _row(res, "ours", dtype, mode), _row(res, "HF", dtype, mode)
                    if a is None or b is None:
                        continue
                    mem = a["peak_bytes"] / b["peak_bytes"] if b["peak_bytes"] > 0 else float("nan")
                    lines.append(
                        f"| {res['name']} | {'x'.join(map(str, res['input']))} | {res['weights']} "
                        f"| {res['max_abs_logit_diff']:.1e} | {dtype} | {mode} | {a['median_s']:.3f} "
                        f"| {b['median_s']:.3f} | {a['median_s'] / b['median_s']:.2f} "
                        f"| {a['peak_bytes'] / 2**20:.0f} | {b['peak_bytes'] / 2**20:.0f} | {_cell(mem, '.2f')} |"
                    )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="batch 1, 8x64 px, 1 warm-up + 2 repeats, no paper sizes")
    p.add_argument("--models", nargs="+", default=["*"], help="registered names or shell patterns")
    p.add_argument("--num_frames", type=int, default=8)
    p.add_argument("--img_size", type=int, default=96, help="target crop side at the small size (adjusted per model)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES))
    p.add_argument("--hf", nargs="*", choices=HF_KINDS, default=list(HF_KINDS), help="ours vs HF at the small size")
    p.add_argument(
        "--hf_paper", nargs="*", choices=HF_KINDS, default=list(HF_KINDS), help="ours vs HF at paper size (HF_PAPER)"
    )
    p.add_argument(
        "--paper_max_gflops",
        type=float,
        default=460.0,
        help="paper-size (batch 1, inference) pass for variants up to this many GMACs/view; 0: none",
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per worker")
    p.add_argument("--out", type=Path, help="Markdown output (default benchmarks/results/<machine>.md)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--worker_out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)  # fmt: skip
    if args.worker:
        result = run_worker(json.loads(Path(args.worker).read_text()))
        Path(args.worker_out).write_text(json.dumps(result))
        return 0
    if args.quick:
        args.batch, args.img_size, args.warmup, args.repeats, args.paper_max_gflops = 1, 64, 1, 2, 0.0
        args.hf_paper = []
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    t0, load_start = time.perf_counter(), os.getloadavg()
    peaks = {"fp32": matmul_gflops(device, torch.float32), "bf16": matmul_gflops(device, torch.bfloat16)}
    print(f"matmul 4096^3: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s", file=sys.stderr)
    results = []
    for spec in plan(args):
        res = run_spec(spec, args.timeout)
        status = res.get("error") or f"{res['wall_s']:.0f}s"
        print(f"{spec['name']} [{spec['size']}]: {status}", file=sys.stderr)
        results.append(res)
    meta = dict(
        machine=machine_name(device), date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        torch=torch.__version__, device=str(device), threads=args.threads,
        args=f"small size {args.num_frames}x{args.img_size}px batch {args.batch}, warm-up {args.warmup}, "
        f"median of {args.repeats}" + (" (--quick)" if args.quick else ""),
        load_start="/".join(f"{v:.1f}" for v in load_start), load_end="/".join(f"{v:.1f}" for v in os.getloadavg()),
        wall_min=(time.perf_counter() - t0) / 60,
    )  # fmt: skip
    text = report(results, peaks, meta)
    out = args.out or RESULTS / f"{meta['machine']}{'-quick' if args.quick else ''}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"written to {out}", file=sys.stderr)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
