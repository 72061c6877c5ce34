"""Does the discriminator judge shape or softness? (issue 9, ``ctxseg.engine.separation``)

With the paper's inputs (softmax against one-hot) a discriminator separates a pixel-perfect
prediction from its target by softness alone and prefers a wrongly placed one-hot mask to it.
With a remedy it cannot separate the perfect prediction (held-out accuracy <= 0.6) but still
catches wrong shapes (>= 0.9), for the plain (global), static and dynamic context
discriminators. The same checks on the paper's inputs fail the first condition, which is
asserted too, so the thresholds mean something.

Every discriminator trains on fakes that are half perfect predictions, a quarter shifted by
6 px and a quarter eroded by 3 px. Sizes for the CPU: 48 px maps (the smallest the pooled
stack takes), a 40 px static ROI, 200 Adam steps at 3e-4, batch 16, predictions at confidence
0.95. At the paper's 0.9975 the softness cue is a 0.25% difference and the discriminator needs
about 250 steps at 128 px to find it (``benchmarks/disc_separation.py`` and the slow test at
the end); at 0.95 it finds it within these steps. At 1e-3 the global D's results swung with
the number of CPU threads (shifted masks 0.76-0.97 at 100 steps, 0.63 at 200); at 3e-4 they
are 0.985-0.993 with 1 and 2 threads. Held-out accuracy is the ROC AUC over all (real, fake)
pairs of 64 held-out cases (``separation._auc``): identical inputs give exactly 0.5.
"""

from __future__ import annotations

import functools

import pytest

from ctxseg.engine.config import AdversarialConfig
from ctxseg.engine.separation import ProbeSettings, run_probe

SETTINGS = ProbeSettings(
    size=48,
    steps=200,
    batch=16,
    lr=3e-4,
    confidence=0.95,
    train_cases=256,
    test_cases=64,
    seed=0,
)
DISCRIMINATORS = {
    "plain": {"discriminator": "plain"},
    "static": {"discriminator": "context", "roi": "static", "roi_size": 40},
    "dynamic": {"discriminator": "context", "roi": "dynamic", "min_roi": 20},
}
INPUTS = {
    "paper": {},
    "scaled": {"real_maps": "scaled"},
    "straight_through": {"fake_maps": "straight_through"},
    "scaled + image": {"real_maps": "scaled", "with_image": True},
    "straight_through + image": {"fake_maps": "straight_through", "with_image": True},
}


@functools.cache
def probe(discriminator: str, inputs: str) -> dict[str, float]:
    """One trained discriminator's held-out figures (cached: several tests read them)."""
    adv = AdversarialConfig(**DISCRIMINATORS[discriminator], **INPUTS[inputs])
    adv.check()
    result, history = run_probe(adv, SETTINGS)
    assert len(history) == SETTINGS.steps
    return result


@pytest.mark.parametrize("discriminator", sorted(DISCRIMINATORS))
def test_paper_inputs_separate_a_perfect_prediction_by_softness(discriminator: str):
    """The failure, and the remedies' first condition failing on the paper's inputs: D tells
    perfect predictions from their targets; the global and static D even score a one-hot mask
    in the wrong place above the right prediction."""
    result = probe(discriminator, "paper")
    assert result["acc_perfect"] >= 0.9  # > 0.6: the remedies' condition fails
    assert result["d_real_perfect"] > result["d_fake_perfect"] + 0.5
    if discriminator != "dynamic":
        # The dynamic D crops the misplaced mask at the target's tight box, where it is cut
        # off on one side and misses the other, which it learns to reject like the soft maps.
        assert result["onehot_shifted_over_perfect"] >= 0.9


REMEDY_CASES = [
    # The global D has no ROI anchored on the target: without the image it cannot know where
    # the object is, so it needs the image (a conditional D) to catch a misplaced mask.
    ("plain", "scaled + image"),
    ("plain", "straight_through + image"),
    # The static ROI is centred on the target's centroid: without the image an eroded mask in
    # it looks like a smaller object (measured 0.79-0.92), so this D gets the image too.
    ("static", "scaled + image"),
    ("static", "straight_through + image"),
    # The dynamic ROI is the target's tight box: a shifted mask is cut by it and an eroded one
    # does not reach its sides, so this D catches both from the class maps alone.
    ("dynamic", "scaled"),
    ("dynamic", "straight_through"),
]


@pytest.mark.parametrize(("discriminator", "inputs"), REMEDY_CASES)
def test_remedy_hides_softness_and_keeps_shape(discriminator: str, inputs: str):
    result = probe(discriminator, inputs)
    # A right prediction is its own real map (scaled) or equals the target (straight-through):
    # D gives both the same score, bit for bit.
    assert result["acc_perfect"] <= 0.6
    assert result["acc_perfect"] == 0.5
    assert result["d_real_perfect"] == result["d_fake_perfect"]
    # ... and it still catches a prediction of the wrong shape.
    assert result["acc_shifted"] >= 0.9
    assert result["acc_eroded"] >= 0.9


@pytest.mark.slow
def test_paper_sizes_reproduce_the_review():
    """The issue's setting: static context D, 128 px, ROI 50, Adam 1e-4, batch 16, 300 steps,
    perfect predictions at 0.9975 (about 15 minutes on 2 busy CPU cores)."""
    adv = AdversarialConfig(discriminator="context", roi="static", roi_size=50)
    result, _ = run_probe(adv, ProbeSettings(wrong_fraction=0.0))
    assert result["acc_perfect"] >= 0.9
    assert result["onehot_shifted_over_perfect"] >= 0.9
