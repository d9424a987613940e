"""State-dict key names of ``transformers``' ViT-family video models (``Timesformer*``, ``Vivit*``) -> ours:
the rows both families share, written once; each loader adds its own rows in front.

Rows are in the layout of the checkpoints on the hub (transformers < 5 names, which TimeSformer keeps in
transformers 5), with the model prefix (``timesformer.`` / ``vivit.``) already removed. Names follow
transformers' ``modeling_vit.py`` (``ViTEmbeddings``, ``ViTLayer``: ``layernorm_before`` / ``attention`` /
``layernorm_after`` / ``intermediate`` / ``output``).
"""

from __future__ import annotations

import re

LAYER = r"^encoder\.layer\.(\d+)\."  # HF's layer i; `\1` in a replacement is its index


def vit_renames(blocks: str, norm: str) -> list[tuple[str, str]]:
    """``(regex on the HF key, our key)`` rows for the embeddings, each layer's norms, attention output
    projection and MLP, the final norm and the classifier. ``blocks``: our prefix of block ``\\1``
    (``r"blocks.\\1."``); ``norm``: our final norm's prefix."""
    return [
        (r"^embeddings\.cls_token$", "cls_token"),
        (r"^embeddings\.position_embeddings$", "pos_embed"),
        (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
        (LAYER + r"layernorm_before\.", blocks + "norm1."),
        (LAYER + r"layernorm_after\.", blocks + "norm2."),
        (LAYER + r"attention\.output\.dense\.", blocks + "attn.proj."),
        (LAYER + r"intermediate\.dense\.", blocks + "mlp.fc1."),
        (LAYER + r"output\.dense\.", blocks + "mlp.fc2."),
        (r"^layernorm\.", norm),
        (r"^classifier\.", "head."),
    ]


def rename(key: str, rows: list[tuple[str, str]]) -> str | None:
    """``key`` renamed by the first row whose regex matches it; ``None`` when none does."""
    for pattern, repl in rows:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    return None


__all__ = ["LAYER", "rename", "vit_renames"]
