"""How a result is computed: protocols, summaries, statistics, figures, tables, the grid runner.

- :mod:`~ctxseg.evaluation.protocols`: the slice and volume protocols (SPEC §8);
- :mod:`~ctxseg.evaluation.summary`: the one summary rule (misses at a stated penalty, no class
  dropped silently), used by ``evaluate``, ``table``, ``reproduce`` and validation;
- :mod:`~ctxseg.evaluation.evaluate`: ``ctxseg evaluate``; :mod:`~ctxseg.evaluation.table`:
  ``ctxseg table``; :mod:`~ctxseg.evaluation.demo`: ``ctxseg demo``;
- :mod:`~ctxseg.evaluation.report`: table rendering and atomic file writers.

This package's ``__init__`` imports only the protocol and summary modules (no training code),
so that the training engine can use them without an import cycle.
"""

from ctxseg.evaluation.protocols import score, slice_metrics, summarize_slices
from ctxseg.evaluation.summary import class_mean, summarize_distances

__all__ = ["class_mean", "score", "slice_metrics", "summarize_distances", "summarize_slices"]
