"""Segmentation metrics: Dice, surface Hausdorff distance / HD95, summaries (SPEC §8)."""

from ctxseg.metrics.dice import dice_score, dice_score_batch
from ctxseg.metrics.hausdorff import hausdorff_distance, hausdorff_distance_batch, mask_edges
from ctxseg.metrics.summary import summarize

__all__ = [
    "dice_score",
    "dice_score_batch",
    "hausdorff_distance",
    "hausdorff_distance_batch",
    "mask_edges",
    "summarize",
]
