"""Losses by name (SPEC §6): ``build_loss(name, num_classes, **kwargs) -> nn.Module``.

Every loss is called as ``loss(logits (B, C, H, W), target (B, H, W) int64) -> scalar`` and
has ``loss.parts(logits, target) -> dict`` with ``"loss"`` (and ``"global"``, ``"roi"`` for the
context loss), computed in one pass. The same holds in 3-D (logits ``(B, C, D, H, W)``, target
``(B, D, H, W)``), and the target may also come as MONAI passes it: ``(B, 1, ...)`` label maps
or one-hot ``(B, C, ...)``.

Example:
    >>> loss = build_loss("context", 2, base="ce", roi="static", roi_size=50)
    >>> loss = build_loss("wce", 2, weights="auto", class_frequencies=[9e5, 1e5])
"""

from __future__ import annotations

import inspect
from typing import Any

from ctxseg.losses._functional import inverse_frequency_weights
from ctxseg.losses.base import PixelwiseLoss, SegmentationLoss
from ctxseg.losses.ce import CrossEntropyLoss
from ctxseg.losses.context import ContextLoss
from ctxseg.losses.dice import DiceLoss
from ctxseg.losses.focal import FocalLoss

__all__ = [
    "LOSSES",
    "ContextLoss",
    "CrossEntropyLoss",
    "DiceLoss",
    "FocalLoss",
    "PixelwiseLoss",
    "SegmentationLoss",
    "build_loss",
    "inverse_frequency_weights",
]

LOSSES = ("ce", "wce", "dice", "focal", "context")
_CONTEXT_KEYS = ("roi", "roi_size", "margin", "min_size", "lambda_roi", "spacing")


def _construct(name: str, cls: type, num_classes: int, kwargs: dict[str, Any]) -> Any:
    """Call ``cls(num_classes, **kwargs)``, naming any argument it does not take."""
    accepted = set(inspect.signature(cls).parameters) - {"num_classes"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(f"loss {name!r} does not take {unknown}; it takes {sorted(accepted)}")
    return cls(num_classes, **kwargs)


def build_loss(name: str, num_classes: int, **kwargs: Any) -> SegmentationLoss:
    """Build a loss by name.

    Args:
        name: ``"ce"``, ``"wce"``, ``"dice"``, ``"focal"`` or ``"context"``.
        num_classes: classes C, background included.
        **kwargs: the loss's arguments:

            - ``wce``: ``weights`` (a list of C values, or ``"auto"``, the default: inverse
              ``class_frequencies`` normalised to sum 1).
            - ``dice``: ``variant`` (``"soft"`` / ``"log_jaccard"``), ``include_background``,
              ``smooth_nr``, ``smooth_dr``, ``eps``, ``batch``.
            - ``focal``: ``gamma``, ``alpha`` (scalar or per class).
            - ``ce`` / ``wce``: ``ignore_index`` (a label left out everywhere).
            - ``context``: ``base`` (one of the other names, default ``"ce"``), ``roi``,
              ``roi_size``, ``margin``, ``min_size``, ``lambda_roi``, ``spacing`` (sizes in
              mm), plus the base's own arguments.

            ``class_frequencies`` (C pixel counts or fractions of the training set) is accepted
            by every name and used only by ``wce`` with ``weights="auto"``.

    Returns:
        The loss module.

    Raises:
        ValueError: unknown name, unknown argument, or a bad argument value.
    """
    kwargs = dict(kwargs)
    class_frequencies = kwargs.pop("class_frequencies", None)
    if name == "context":
        base_name = kwargs.pop("base", "ce")
        if base_name == "context" or base_name not in LOSSES:
            raise ValueError(f"context base must be one of {LOSSES[:-1]}, got {base_name!r}")
        context_kwargs = {k: kwargs.pop(k) for k in _CONTEXT_KEYS if k in kwargs}
        base = build_loss(base_name, num_classes, class_frequencies=class_frequencies, **kwargs)
        return ContextLoss(base, **context_kwargs)
    if name == "ce":
        return _construct(name, CrossEntropyLoss, num_classes, kwargs)
    if name == "wce":
        weights = kwargs.pop("weights", "auto")
        if isinstance(weights, str):
            if weights != "auto":
                raise ValueError(f"wce weights must be a list or 'auto', got {weights!r}")
            if class_frequencies is None:
                raise ValueError("wce with weights='auto' needs class_frequencies")
            if len(class_frequencies) != num_classes:
                raise ValueError(
                    f"class_frequencies must have {num_classes} values, got {class_frequencies}"
                )
            weights = inverse_frequency_weights(class_frequencies)
        return _construct(name, CrossEntropyLoss, num_classes, {"weights": weights, **kwargs})
    if name == "dice":
        return _construct(name, DiceLoss, num_classes, kwargs)
    if name == "focal":
        return _construct(name, FocalLoss, num_classes, kwargs)
    raise ValueError(f"unknown loss {name!r}; choose one of {LOSSES}")
