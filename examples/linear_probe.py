"""Linear probe on `vt features` output: multinomial logistic regression in torch, trained on one folder of
features and tested on another.

    vt features --ckpt_path $CKPT --config configs/vivit_factorised.yaml --split train --views 1x1 --out feats/train
    vt features --ckpt_path $CKPT --config configs/vivit_factorised.yaml --split test --views 1x1 --out feats/test
    python examples/linear_probe.py feats/train feats/test
"""

import csv
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file


def load(folder: Path) -> tuple[torch.Tensor, list[str]]:
    rows = list(csv.DictReader((folder / "index.csv").open()))
    shards = sorted({int(r["shard"]) for r in rows})
    x = torch.cat([load_file(folder / f"shard_{k:05d}.safetensors")["features"] for k in shards])
    return x, [r["label"] for r in rows]


def main(train_dir: str, test_dir: str, epochs: int = 300, weight_decay: float = 1e-3) -> None:
    (x_train, y_train), (x_test, y_test) = load(Path(train_dir)), load(Path(test_dir))
    classes = sorted(set(y_train))
    y_train, y_test = (torch.tensor([classes.index(c) for c in y]) for y in (y_train, y_test))
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6  # standardise with the training statistics
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    torch.manual_seed(0)
    probe = torch.nn.Linear(x_train.shape[1], len(classes))
    opt = torch.optim.AdamW(probe.parameters(), lr=1e-2, weight_decay=weight_decay)
    for _ in range(epochs):  # full batch
        opt.zero_grad()
        torch.nn.functional.cross_entropy(probe(x_train), y_train).backward()
        opt.step()
    with torch.no_grad():
        acc_train = (probe(x_train).argmax(1) == y_train).float().mean().item()
        acc_test = (probe(x_test).argmax(1) == y_test).float().mean().item()
    majority = torch.bincount(y_test, minlength=len(classes)).max().item() / len(y_test)
    print(
        f"linear probe on {x_train.shape[1]}-d features: train top-1 {100 * acc_train:.1f}% ({len(y_train)} rows), "
        f"test top-1 {100 * acc_test:.1f}% ({len(y_test)} rows); chance {100 / len(classes):.1f}%, "
        f"majority class {100 * majority:.1f}%"
    )


if __name__ == "__main__":
    main(*sys.argv[1:3])
