"""The official video checkpoints of TimeSformer, ViViT and UniFormerV2: where each is still served, its
sha256, input, normalisation and the accuracy its release reports.

Every value is copied from a source named next to it (``*_source`` fields); nothing here was measured by
this suite. Sources were checked on 2026-12-03 from a machine without network access, so "checked" means:
read from the official repositories' model-zoo files (git snapshots), from stored copies of the Hugging Face
file pages (their Git LFS pointers give the sha256), and from the official issue trackers (reports of dead
links). A sha256 is recorded only where such a page states it; otherwise it is ``None``, and
:mod:`~video_transformers.pretrained.hub` records the hash at first use (and checks every Hub LFS file
against the sha256 the Hub stores it under).

``from_pretrained("<name>")`` loads a row by name from the first source that this suite reads and that is
reachable: a file already in ``$VT_WEIGHTS_DIR``, then the Hugging Face cache or Hub.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, Literal

CHECKED = "2026-12-03"
KINETICS_MEAN, KINETICS_STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)  # PySlowFast defaults (_C.DATA.MEAN/STD)
HALF = (0.5, 0.5, 0.5)

# How each kind of source was checked on CHECKED (no network on the checking machine).
HF_PAGE = "stored copy of the Hugging Face file page (Git LFS pointer); not fetched live"
HF_TREE = "stored copy of the Hugging Face repo page lists the file; not fetched live"
TIMESFORMER_README = "listed in facebookresearch/TimeSformer README.md (commit a5ef29a, model zoo); not fetched"
SCENIC_README = "listed in google-research/scenic scenic/projects/vivit/README.md (commit 4a38d47); not fetched"
ALIYUN_GONE = (
    "gone: the bucket answers NoSuchBucket (OpenGVLab/UniFormerV2 issues #77 2024-08-16, #81 2025-08-08, "
    "#82 2025-08-30, last comment 2026-01-21: no replacement given)"
)
MMACTION_README = (
    "listed in open-mmlab/mmaction2 configs/recognition/uniformerv2/README.md (commit 24131ed); not fetched"
)

SourceKind = Literal["hf-folder", "hf-file", "url"]
Status = Literal["served", "listed", "gone"]


@dataclass(frozen=True)
class Source:
    """One place a checkpoint can be downloaded from.

    ``location``: a hub repo id (``hf-folder``: a ``transformers`` folder), ``repo/path`` of one file in a hub
    repo (``hf-file``), or a URL. ``format``: the :func:`~video_transformers.pretrained.list_formats` entry
    that reads it (``None``: this suite does not read that layout). ``sha256`` of ``file``; ``sha256_prefix``
    where only a prefix is published (OpenMMLab file names end in the first 8 hex digits of the sha256).
    """

    kind: SourceKind
    location: str
    format: str | None
    status: Status
    checked: str
    file: str | None = None  # the weights file (hf-folder: inside the repo; url: the name to save it as)
    sha256: str | None = None
    sha256_source: str | None = None
    sha256_prefix: str | None = None
    revision: str | None = None  # a pinned commit (hub sources)
    size: int | None = None  # bytes, where the pointer states it

    @property
    def filename(self) -> str:
        """The weights file's base name (what a local copy in ``$VT_WEIGHTS_DIR`` is called)."""
        if self.file:
            return self.file.rsplit("/", 1)[-1]
        return self.location.split("?", 1)[0].rsplit("/", 1)[-1]

    @property
    def hub_id(self) -> str | None:
        """``hf-hub:`` string for hub sources (revision and file included), else ``None``."""
        if self.kind == "url":
            return None
        org, name, *path = self.location.split("/", 2)
        rev = f"@{self.revision}" if self.revision else ""
        return f"hf-hub:{org}/{name}{rev}" + (f"/{path[0]}" if path else "")


@dataclass(frozen=True)
class Checkpoint:
    """A released checkpoint: what it is, how to feed it, how good its release says it is, where to get it."""

    name: str
    family: Literal["timesformer", "vivit", "uniformerv2"]
    model: str  # the closest registered model (video_transformers.list_models())
    dataset: str
    pretraining: str
    num_frames: int
    img_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    top1: float | None  # what the release reports for these weights
    views: str  # temporal clips x spatial crops of that top-1
    top1_source: str
    sources: tuple[Source, ...]
    paper_top1: float | None = None  # the paper's figure for the same configuration, where it differs
    paper_source: str | None = None
    note: str = ""
    normalisation_source: str = ""

    @property
    def readable_sources(self) -> list[Source]:
        """Sources this suite can load (a known format, not reported gone), in preference order."""
        return [s for s in self.sources if s.format is not None and s.status != "gone"]


_VIVIT_TOP1 = "scenic/projects/vivit/README.md model zoo (commit 4a38d47), multi-view evaluation"
_ZOO = "OpenGVLab/UniFormerV2 MODEL_ZOO.md (commit 7c18fd6)"
# What every row of a family shares: how its inputs are normalised, and where its figures come from.
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "timesformer": dict(
        mean=KINETICS_MEAN,
        std=KINETICS_STD,
        normalisation_source="TimeSformer timesformer/config/defaults.py _C.DATA.MEAN/STD (HF: preprocessor_config)",
    ),
    "vivit": dict(mean=HALF, std=HALF, top1_source=_VIVIT_TOP1),
    "uniformerv2": dict(
        mean=KINETICS_MEAN,
        std=KINETICS_STD,
        top1_source=f"{_ZOO}; views = its #Frame column (frames x crops x clips)",
        normalisation_source="UniFormerV2 slowfast/config/defaults.py _C.DATA.MEAN/STD",
    ),
}


def _checkpoint(family, name, model, dataset, pretraining, frames, size, top1, views, sources, **fields) -> Checkpoint:
    """One catalog row: the fields it states, over its family's :data:`FAMILY_DEFAULTS`."""
    fields = dict(FAMILY_DEFAULTS[family], top1=top1, views=views, sources=tuple(sources), **fields)
    return Checkpoint(name, family, model, dataset, pretraining, frames, size, **fields)


def _tsf(name, dataset, size, frames, tag, url_id, url_file, top1, paper, hf, sha, model, **kw) -> Checkpoint:
    hf_source = Source(
        "hf-folder",
        hf,
        "hf_timesformer",
        "served",
        f"{CHECKED}: {HF_PAGE if sha else HF_TREE}",
        file="pytorch_model.bin",
        sha256=sha,
        sha256_source=kw.pop("sha_source", None),
    )
    official = Source(
        "url",
        f"https://www.dropbox.com/s/{url_id}/{url_file}?dl=1",
        "timesformer_official",
        "listed",
        f"{CHECKED}: {TIMESFORMER_README}",
    )
    return _checkpoint(
        "timesformer",
        name,
        model,
        dataset,
        "ImageNet-21K ViT-B/16",
        frames,
        size,
        top1,
        "1x3",
        (official, hf_source),
        top1_source=f"TimeSformer README model zoo ({tag}); views: configs/{kw.pop('cfg')} TEST.NUM_SPATIAL_CROPS 3, "
        "NUM_ENSEMBLE_VIEWS 1",
        paper_top1=paper,
        paper_source="Bertasius et al. 2021, Table 5 (K400, 1 clip x 3 crops)" if paper else None,
        **kw,
    )


_FCAKYON = (
    "the Hub copy is under fcakyon (who ported TimeSformer to transformers), not the facebook org, which has no "
    "TimeSformer-L repo in the stored pages"
)
_PR_SHA = "LFS pointer of pytorch_model.bin on the PR commit {pr} merged to main as {merged}, the file's last change"
TIMESFORMER = [
    _tsf(
        "timesformer_base_k400", "Kinetics-400", 224, 8, "K400 8x224", "g5t24we9gl5yk88",
        "TimeSformer_divST_8x32_224_K400.pyth", 77.9, 78.0, "facebook/timesformer-base-finetuned-k400",
        "bdb264469ffc423fb86c78932268a290bfbd69bd768b7ce8595c047a2dc54089", "timesformer_base_divided_8x224",
        cfg="Kinetics/TimeSformer_divST_8x32_224.yaml", sha_source=_PR_SHA.format(pr="4be000e", merged="72d580c (#1)"),
    ),
    _tsf(
        "timesformer_hr_k400", "Kinetics-400", 448, 16, "K400 16x448", "6f0x172lpqy3oxt",
        "TimeSformer_divST_16x16_448_K400.pyth", 79.6, 79.7, "facebook/timesformer-hr-finetuned-k400",
        "7f57219e9892e2ff9a77b547766112cbccd2c134930500a634562fba9939437c", "timesformer_hr_divided_16x448",
        cfg="Kinetics/TimeSformer_divST_16x16_448.yaml", sha_source=_PR_SHA.format(pr="fd5336c", merged="4448334 (#1)"),
    ),
    _tsf(
        "timesformer_large_k400", "Kinetics-400", 224, 96, "K400 96x224", "r1iuxahif3sgimo",
        "TimeSformer_divST_96x4_224_K400.pyth", 80.6, 80.7, "fcakyon/timesformer-large-finetuned-k400",
        None, "timesformer_large_divided_96x224", cfg="Kinetics/TimeSformer_divST_96x4_224.yaml", note=_FCAKYON,
    ),
    _tsf(
        "timesformer_base_ssv2", "Something-Something-V2", 224, 8, "SSv2 8x224", "tybhuml57y24wpm",
        "TimeSformer_divST_8_224_SSv2.pyth", 59.1, None, "facebook/timesformer-base-finetuned-ssv2",
        "a0343cc07c303f9551d912a7678170a63b9cf087ef2e757edae529c6825dc3f7", "timesformer_base_divided_8x224",
        cfg="SSv2/TimeSformer_divST_8_224.yaml", sha_source=_PR_SHA.format(pr="1759890", merged="468c77d (#2)"),
    ),
    _tsf(
        "timesformer_hr_ssv2", "Something-Something-V2", 448, 16, "SSv2 16x448", "9t68uzk8w2fpfnv",
        "TimeSformer_divST_16_448_SSv2.pyth", 61.8, None, "facebook/timesformer-hr-finetuned-ssv2",
        "d4992195ff13ebeea1d235c57807b1e1cedf7805f28724823797d839256d6305", "timesformer_hr_divided_16x448",
        cfg="SSv2/TimeSformer_divST_16_448.yaml", sha_source=_PR_SHA.format(pr="7c81fe0", merged="11f06e7 (#1)"),
    ),
    _tsf(
        "timesformer_large_ssv2", "Something-Something-V2", 224, 64, "SSv2 64x224", "3f1rm2al8mhprwa",
        "TimeSformer_divST_64_224_SSv2.pyth", 62.0, None, "fcakyon/timesformer-large-finetuned-ssv2",
        None, "timesformer_large_divided_96x224", cfg="SSv2/TimeSformer_divST_64_224.yaml",
        note="64 frames (the registered L variant has 96); " + _FCAKYON,
    ),
    _tsf(
        "timesformer_base_k600", "Kinetics-600", 224, 8, "K600 8x224", "4h2qt41m2z3aqrb",
        "TimeSformer_divST_8x32_224_K600.pyth", 79.1, None, "facebook/timesformer-base-finetuned-k600",
        None, "timesformer_base_divided_8x224", cfg="Kinetics/TimeSformer_divST_8x32_224.yaml",
    ),
    _tsf(
        "timesformer_hr_k600", "Kinetics-600", 448, 16, "K600 16x448", "ft1e92g2vhvxecv",
        "TimeSformer_divST_16x16_448_K600.pyth", 81.8, None, "facebook/timesformer-hr-finetuned-k600",
        None, "timesformer_hr_divided_16x448", cfg="Kinetics/TimeSformer_divST_16x16_448.yaml",
    ),
    _tsf(
        "timesformer_large_k600", "Kinetics-600", 224, 96, "K600 96x224", "857rx6xeclxfhdg",
        "TimeSformer_divST_96x4_224_K600.pyth", 82.2, None, "fcakyon/timesformer-large-finetuned-k600",
        None, "timesformer_large_divided_96x224", cfg="Kinetics/TimeSformer_divST_96x4_224.yaml", note=_FCAKYON,
    ),
]  # fmt: skip


def _scenic(path: str) -> Source:
    dataset, model = path.split("/")
    return Source(
        "url",
        f"https://storage.googleapis.com/scenic-bucket/vivit/{path}/checkpoint",
        "scenic_vivit",  # flax msgpack, read without JAX
        "listed",
        f"{CHECKED}: {SCENIC_README}",
        file=f"{model}_{dataset}.msgpack",  # every scenic file is called `checkpoint`: the local copy is named apart
    )


_HF_VIVIT_SHA = (
    "LFS pointer of pytorch_model.bin at commit 990d41c (file last changed by 800b669 'Fix model head weights')"
)
_VIVIT_B_FE, _VIVIT_L_FE = "vivit_base_factorised_encoder_16x2", "vivit_large_factorised_encoder_16x2"
_L_NOTE = "ViViT-L: width 1024, 24 spatial and 24 temporal layers (scenic's Kinetics config)"
VIVIT = [
    _checkpoint(
        "vivit",
        "vivit_b16x2_k400",
        "vivit_base_spatio_temporal_16x2",
        "Kinetics-400",
        "ImageNet-21K ViT-B/16",
        32,
        224,
        79.9,
        "4x3",
        (
            Source(
                "hf-folder",
                "google/vivit-b-16x2-kinetics400",
                "hf_vivit",
                "served",
                f"{CHECKED}: {HF_PAGE}",
                file="pytorch_model.bin",
                sha256="160c79526e796d6101c4d9d0fe4000e26a6098a4d8e97f4cb8935fa6deb060d0",
                sha256_source=_HF_VIVIT_SHA,
            ),
            _scenic("kinetics_400/vivit_base_16x2_unfactorized"),
        ),
        normalisation_source="HF preprocessor_config.json (rescale to [-1, 1]); scenic's inputs are the same",
        note="the HF weights are transformers' conversion of the scenic checkpoint "
        "(convert_vivit_flax_to_pytorch.py downloads vivit_base_16x2_unfactorized); google/vivit-b-16x2 main "
        "holds the same file (same LFS sha256); the scenic file alone does not say it is Model 1: read it with "
        'from_pretrained(name, attention_type="spacetime")',
    ),
    *[
        _checkpoint("vivit", name, model, dataset, "ImageNet-21K ViT", 32, 224, top1, "4x3", [_scenic(path)],
                    normalisation_source="scenic: pixels in [-1, 1]", note=note)
        for name, model, dataset, top1, path, note in [
            ("vivit_b16x2_fe_k400", _VIVIT_B_FE, "Kinetics-400", 78.4, "kinetics_400/vivit_base_16x2_fe", ""),
            ("vivit_l16x2_fe_k400", _VIVIT_L_FE, "Kinetics-400", 80.3, "kinetics_400/vivit_large_16x2_fe", _L_NOTE),
            ("vivit_l16x2_fe_k600", _VIVIT_L_FE, "Kinetics-600", 81.6, "kinetics_600/vivit_large_16x2_fe", _L_NOTE),
        ]
    ],
]  # fmt: skip

_ALIYUN = "https://pjlab-gvm-data.oss-cn-shanghai.aliyuncs.com/uniformerv2/"
_MMACTION = "https://download.openmmlab.com/mmaction/v1.0/recognition/uniformerv2/"
_ANDY = "Andy1621/uniformerv2"  # the first author's hub account; the official README links its demo space
_ANDY_REV = "d9872b5afdc8e56fd18afadc66f1f5e07f156ee5"  # main: 3 commits, both files added once


def _aliyun(path: str) -> Source:
    return Source("url", _ALIYUN + path, "uniformerv2_official", "gone", f"{CHECKED}: {ALIYUN_GONE}")


def _mmaction(path: str) -> Source:
    return Source(
        "url",
        _MMACTION + path,
        None,  # mmaction2's key layout (cls_head.*): the official loaders do not read it (issue #82)
        "listed",
        f"{CHECKED}: {MMACTION_README}",
        sha256_prefix=path.rsplit("-", 1)[-1].split(".")[0],
        sha256_source="OpenMMLab file names end in the first 8 hex digits of the file's sha256 (publish_model)",
    )


def _andy(file: str, sha: str, size: int, commit: str) -> Source:
    return Source(
        "hf-file",
        f"{_ANDY}/{file}",
        "uniformerv2_official",
        "served",
        f"{CHECKED}: {HF_PAGE}",
        file=file,
        sha256=sha,
        sha256_source=f"LFS pointer in commit {commit}, the only commit touching the file",
        revision=_ANDY_REV,
        size=size,
    )


_uv2 = partial(_checkpoint, "uniformerv2")

_B16, _L14, _L336 = "uniformerv2_b16_8x224", "uniformerv2_l14_8x224", "uniformerv2_l14_32x336"
_B16_SSV2 = "uniformerv2_b16_ssv2_16x224"  # local MHRA, temporal down-sampling, 8 global blocks
_MM_L14 = "kinetics400/uniformerv2-large-p14-res{s}_clip-kinetics710-pre_u{t}_kinetics400-rgb_20221219-{h}.pth"
_NO_COPY = "no copy of these exact weights found; mmaction2's B/16 of the same setting is a re-training"
UNIFORMERV2 = [
    _uv2("uniformerv2_b16_k400_8x224", _B16, "Kinetics-400", "CLIP-400M", 8, 224, 84.4, "4x3",
         [_aliyun("k400/k400_uniformerv2_b16_8x224.pyth")], note=_NO_COPY),
    _uv2("uniformerv2_b16_k710_k400_8x224", _B16, "Kinetics-400", "CLIP-400M + K710", 8, 224, 85.6, "4x3",
         [_andy("k400+k710_uniformerv2_b16_8x224.pyth",
                "743da61c97f6281bd11ef1d364c2101698c8e89ff7722ee957378e36ef344005", 458289355, "0504a68"),
          _aliyun("k400/k400_k710_uniformerv2_b16_8x224.pyth")],
         note="the hub file is named k400+k710_...; the official demo loads it with no LT-MHRA and no temporal "
         "down-sampling, as exp/k400/k400+k710_b16_f8x224/config.yaml trains it"),
    _uv2("uniformerv2_l14_k710_k400_8x224", _L14, "Kinetics-400", "CLIP-400M + K710", 8, 224, 88.8, "4x3",
         [_aliyun("k400/k400_k710_uniformerv2_l14_8x224.pyth"), _mmaction(_MM_L14.format(s=224, t=8, h="972ea063"))]),
    _uv2("uniformerv2_l14_k710_k400_16x224", _L14, "Kinetics-400", "CLIP-400M + K710", 16, 224, 89.1, "4x3",
         [_aliyun("k400/k400_k710_uniformerv2_l14_16x224.pyth"),
          _mmaction(_MM_L14.format(s=224, t=16, h="6dc86d05"))]),
    _uv2("uniformerv2_l14_k710_k400_32x224", _L14, "Kinetics-400", "CLIP-400M + K710", 32, 224, 89.3, "2x3",
         [_aliyun("k400/k400_k710_uniformerv2_l14_32x224.pyth"),
          _mmaction(_MM_L14.format(s=224, t=32, h="56a46f64"))]),
    _uv2("uniformerv2_l14_k710_k400_32x336", _L336, "Kinetics-400", "CLIP-400M + K710", 32, 336, 89.7, "2x3",
         [_aliyun("k400/k400_k710_uniformerv2_l14_32x336.pyth"),
          _mmaction(_MM_L14.format(s=336, t=32, h="1dd7650f"))]),
    _uv2("uniformerv2_l14_k710_k400_64x336", _L336, "Kinetics-400", "CLIP-400M + K710", 64, 336, 90.0, "2x3",
         [_aliyun("k400/k400_k710_uniformerv2_l14_64x336.pyth")]),
    _uv2("uniformerv2_b16_ssv2_16x224", _B16_SSV2, "Something-Something-V2", "CLIP-400M", 16, 224, 69.5, "1x3",
         [_aliyun("sthv2/sthv2_uniformerv2_b16_16x224.pyth")]),
    _uv2("uniformerv2_b16_ssv2_32x224", _B16_SSV2, "Something-Something-V2", "CLIP-400M", 32, 224, 70.7, "1x3",
         [_aliyun("sthv2/sthv2_uniformerv2_b16_32x224.pyth")]),
    _uv2("uniformerv2_l14_ssv2_16x224", _L14, "Something-Something-V2", "CLIP-400M", 16, 224, 72.1, "1x3",
         [_aliyun("sthv2/sthv2_uniformerv2_l14_16x224.pyth")]),
    _uv2("uniformerv2_l14_ssv2_32x224", _L14, "Something-Something-V2", "CLIP-400M", 32, 224, 73.0, "1x3",
         [_aliyun("sthv2/sthv2_uniformerv2_l14_32x224.pyth")]),
    _uv2("uniformerv2_b16_mit_8x224", _B16, "Moments in Time V1", "CLIP-400M + K710 + K400", 8, 224, 42.6, "4x3",
         [_andy("mit_uniformerv2_b16_8x224.pyth",
                "99af00a793ca63b4f92885c1f50799e8140c22f2c0e790a22079c5772deb7d73", 458101707, "d9872b5"),
          _aliyun("mitv1/mit_uniformerv2_b16_8x224.pyth")]),
]  # fmt: skip

CHECKPOINTS: dict[str, Checkpoint] = {c.name: c for c in (*TIMESFORMER, *VIVIT, *UNIFORMERV2)}


def get(name: str) -> Checkpoint | None:
    return CHECKPOINTS.get(name)


# -- tables (vt info --pretrained, docs/pretrained.md) ---------------------------------------------------
def _norm(c: Checkpoint) -> str:
    same = len(set(c.mean)) == 1 and len(set(c.std)) == 1
    return f"{c.mean[0]:g} / {c.std[0]:g}" if same else f"{list(c.mean)} / {list(c.std)}"


def _sha(s: Source) -> str:
    if s.sha256:
        return f"`{s.sha256}`"
    if s.sha256_prefix:
        return f"`{s.sha256_prefix}…` (prefix)"
    return "unknown"


def _where(s: Source) -> str:
    return s.hub_id or s.location


def _load_from(s: Source) -> str:
    """A readable source for the table; a download saved under another name than the URL's says which."""
    saved_as = s.kind == "url" and s.file and s.file != s.location.split("?", 1)[0].rsplit("/", 1)[-1]
    return f"`{_where(s)}`" + (f" saved as `$VT_WEIGHTS_DIR/{s.filename}`" if saved_as else "")


def rows(names: list[str] | None = None) -> list[dict]:
    """One plain dict per checkpoint (the csv/json output)."""
    out = []
    for c in (CHECKPOINTS[n] for n in (names or list(CHECKPOINTS))):
        d = asdict(c)
        d["loadable_from"] = [_where(s) for s in c.readable_sources]
        out.append(d)
    return out


def checkpoints_markdown() -> str:
    """The checkpoint table: one row per release."""
    head = ["name", "model", "dataset", "input TxS", "mean / std", "top-1 (views)", "paper", "load from"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in CHECKPOINTS.values():
        top1 = f"{c.top1} ({c.views})" if c.top1 is not None else "-"
        paper = f"{c.paper_top1}" if c.paper_top1 is not None else "-"
        load = "<br>".join(_load_from(s) for s in c.readable_sources) or "not readable here (see sources)"
        cells = [f"`{c.name}`", f"`{c.model}`", c.dataset, f"{c.num_frames}x{c.img_size}", _norm(c), top1, paper, load]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def sources_markdown() -> str:
    """Every source of every checkpoint, with its status, the date and way it was checked, and sha256."""
    head = ["checkpoint", "source", "format read by", "status", "checked", "sha256"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in CHECKPOINTS.values():
        for s in c.sources:
            cells = [f"`{c.name}`", f"`{_where(s)}`", f"`{s.format}`" if s.format else "none", s.status,
                     s.checked, _sha(s)]  # fmt: skip
            lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def notes_markdown() -> str:
    """Per-checkpoint notes and where each figure comes from."""
    out = []
    for c in CHECKPOINTS.values():
        parts = [f"top-1: {c.top1_source}"]
        if c.paper_source:
            parts.append(f"paper: {c.paper_source}")
        parts.append(f"mean/std: {c.normalisation_source}")
        if c.note:
            parts.append(c.note)
        out.append(f"* `{c.name}`: " + "; ".join(parts) + ".")
    return "\n".join(out) + "\n"


def to_csv(names: list[str] | None = None) -> str:
    buf = io.StringIO()
    data = rows(names)
    flat = [
        {k: (" ".join(map(str, v)) if isinstance(v, list | tuple) else v) for k, v in r.items() if k != "sources"}
        for r in data
    ]
    writer = csv.DictWriter(buf, fieldnames=list(flat[0]))
    writer.writeheader()
    writer.writerows(flat)
    return buf.getvalue()


__all__ = ["CHECKPOINTS", "Checkpoint", "Source", "get", "rows"]
