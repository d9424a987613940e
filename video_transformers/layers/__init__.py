"""Building blocks shared by every model family."""

from video_transformers.layers.attention import Attention, attention_maps, set_fused_attention
from video_transformers.layers.block import Block, BlockStack, Encoder
from video_transformers.layers.checkpoint import checkpoint_seq, run_seq
from video_transformers.layers.mlp import DropPath, Mlp, drop_path_rates, make_act_layer
from video_transformers.layers.patch_embed import PatchEmbed3d, inflate_patch_weight
from video_transformers.layers.tokens import prepend, split_prefix

__all__ = [
    "Attention",
    "Block",
    "BlockStack",
    "DropPath",
    "Encoder",
    "Mlp",
    "PatchEmbed3d",
    "attention_maps",
    "checkpoint_seq",
    "run_seq",
    "drop_path_rates",
    "inflate_patch_weight",
    "make_act_layer",
    "prepend",
    "set_fused_attention",
    "split_prefix",
]
