"""``vt export``: a trained model as ONNX, TorchScript, a ``torch.export`` ExportedProgram, or a Hugging Face
folder to share.

    vt export --ckpt_path runs/vivit_factorised/version_0/checkpoints/best.ckpt --format onnx --out vivit.onnx
    vt export --model timesformer_base_divided_8x224 --tiny --format exported-program --out ts.pt2
    vt export --ckpt_path runs/vivit_factorised/version_0/checkpoints/best.ckpt --format hf --out vivit_hf/
    hf upload <namespace>/<name> vivit_hf/      # then: from_pretrained("hf-hub:<namespace>/<name>")

The exported model maps normalised ``(B, C, T, H, W)`` video to ``(B, num_classes)`` logits with a dynamic
batch size; ``<out>.json`` records the class names and how to prepare inputs. ``--format hf`` writes a folder
(``config.json`` with every architecture argument, ``model.safetensors``, a ``README.md`` model card with the
test report found beside the checkpoint) that ``huggingface_hub`` uploads as it is. After writing, the
export is run on batches of 1 and 3 and compared with the eager model (``--atol``, default 1e-4).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from video_transformers.inference.export import FORMATS, HF, export_hf, export_model, max_abs_diff
from video_transformers.inference.loading import LoadedModel, load_model
from video_transformers.models import create_model, get_entry
from video_transformers.pretrained import PretrainedError
from video_transformers.pretrained.lightning_ckpt import build_recorded


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vt export", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--ckpt_path", help="a vt fit .ckpt, or any source from_pretrained reads (path, hub id, catalog name)"
    )
    src.add_argument("--model", help="a registered model name, randomly initialised (for trying formats)")
    p.add_argument("--tiny", action="store_true", help="with --model: the registry's test-sized overrides")
    p.add_argument("--format", required=True, choices=(*FORMATS, HF))
    p.add_argument("--out", type=Path, required=True, help="a file; with --format hf a new (or empty) folder")
    p.add_argument("--hub_id", help="with --format hf: the repo it will be uploaded to (for the model card)")
    p.add_argument(
        "--report", type=Path, help="with --format hf: a test_report.json for the card (default: beside the checkpoint)"
    )
    p.add_argument("--atol", type=float, default=1e-4, help="max |exported - eager| logit difference allowed")
    p.add_argument("--no-check", "--no_check", dest="check", action="store_false", help="skip the parity check")
    p.add_argument("--trust_checkpoint", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    loaded: list[LoadedModel] = []

    def build():  # noqa: ANN202 (the model; built inside build_recorded for --format hf)
        if args.ckpt_path:
            loaded.append(load_model(args.ckpt_path, device="cpu", trust=args.trust_checkpoint))
            return loaded[0].model
        return create_model(args.model, **(get_entry(args.model).tiny if args.tiny else {})).eval()

    try:
        if args.format == HF:
            model, spec = build_recorded(build)
            clip = loaded[0].spec.to_dict() if loaded else None
            export_hf(model, spec, args.out, clip=clip, source=args.ckpt_path, hub_id=args.hub_id, report=args.report)
        else:
            model = build()
            if loaded:
                lm = loaded[0]
                meta = {"source": lm.source, "classes": lm.class_names, "clip": lm.spec.to_dict()}
            else:
                meta = {"source": args.model, "classes": None, "mean": list(model.mean), "std": list(model.std)}
            meta["input"] = ["batch", 3, model.num_frames, model.img_size, model.img_size]
            export_model(model, args.format, args.out, metadata=meta)
    except (PretrainedError, ValueError, KeyError, RuntimeError) as e:
        print(f"vt export: {e}", file=sys.stderr)
        return 2
    if args.format == HF:
        files = ", ".join(sorted(f.name for f in args.out.iterdir()))
        print(f"wrote {args.out}/ ({files}); share it with `hf upload <namespace>/<name> {args.out}`")
    else:
        print(f"wrote {args.out} ({args.format}) and {args.out}.json")
    if not args.check:
        return 0
    diffs = max_abs_diff(model, args.out, args.format)
    worst = max(diffs.values())
    print("max |exported - eager| logits: " + ", ".join(f"batch {b}: {d:.2e}" for b, d in diffs.items()))
    if worst > args.atol:
        print(
            f"vt export: {args.out} differs from the eager model by {worst:.2e} > --atol {args.atol}", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
