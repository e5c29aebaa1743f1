"""Preference elicitation: the posterior finds a simulated investor's risk aversion."""

from __future__ import annotations

import math

import numpy as np
import pytest

from offchain.cloud.preferences import (
    MAX_QUESTIONS,
    SHARPNESS,
    TILT_UNIT,
    TOLERANCE_GAMMA,
    OutcomePath,
    PreferencePosterior,
    Theme,
)
from offchain.errors import InvalidInput


def _simulate(true_gamma, tolerance, seed, themes=(), tilts=None):
    """A simulated investor answering with the same logistic choice model."""
    rng = np.random.default_rng(seed)
    posterior = PreferencePosterior(tolerance, themes)
    asked = 0

    def utility(path):
        tilt = sum((tilts or {}).get(t, 0.0) * e for t, e in path.exposures.items())
        return path.mu - true_gamma / 2 * path.sigma**2 + TILT_UNIT * tilt

    while (question := posterior.next_question()) is not None:
        p_a = 1 / (1 + math.exp(-SHARPNESS * (utility(question.a) - utility(question.b))))
        posterior.answer(question, "a" if rng.random() < p_a else "b")
        asked += 1
    return posterior, asked


@pytest.mark.parametrize(("true_gamma", "tolerance"), [(1.5, 4), (4.0, 1), (10.0, 5), (2.0, 2)])
def test_posterior_moves_to_the_true_risk_aversion_and_stops(true_gamma, tolerance):
    errors = []
    for seed in range(4):
        posterior, asked = _simulate(true_gamma, tolerance, seed)
        estimate = posterior.estimate()
        assert asked <= MAX_QUESTIONS
        assert posterior.is_certain()
        assert estimate.risk_aversion_low <= estimate.risk_aversion <= estimate.risk_aversion_high
        errors.append(abs(math.log(estimate.risk_aversion / true_gamma)))
    prior_error = abs(math.log(TOLERANCE_GAMMA[tolerance] / true_gamma))
    assert float(np.median(errors)) < min(0.3, prior_error)


def test_theme_tilt_moves_toward_the_truth():
    liked, _ = _simulate(4.0, 3, 1, (Theme.GREEN_ENERGY,), {Theme.GREEN_ENERGY: 1.0})
    disliked, _ = _simulate(4.0, 3, 1, (Theme.GREEN_ENERGY,), {Theme.GREEN_ENERGY: -1.0})
    prior = PreferencePosterior(3, (Theme.GREEN_ENERGY,)).estimate().theme_tilts
    assert liked.estimate().theme_tilts[Theme.GREEN_ENERGY] > prior[Theme.GREEN_ENERGY]
    assert disliked.estimate().theme_tilts[Theme.GREEN_ENERGY] < prior[Theme.GREEN_ENERGY]


def test_reactions_update_the_posterior():
    current = OutcomePath(0.05, 0.08)
    riskier = OutcomePath(0.065, 0.16)
    posterior = PreferencePosterior(3)
    before = posterior.estimate().risk_aversion
    for _ in range(3):
        posterior.react(riskier, current, "rejected")
    assert posterior.estimate().risk_aversion > before
    accepting = PreferencePosterior(3)
    for _ in range(3):
        accepting.react(riskier, current, "accepted")
    assert accepting.estimate().risk_aversion < before
    edited = PreferencePosterior(3)
    edited.react(riskier, current, "edited", edited=OutcomePath(0.055, 0.10))
    assert edited.estimate().risk_aversion > before
    with pytest.raises(InvalidInput, match="reaction"):
        posterior.react(riskier, current, "ignored")


def test_estimate_goes_into_the_profile(profile_data):
    from offchain.cloud.profile import parse_profile

    posterior, _ = _simulate(6.0, 3, 0)
    implicit = posterior.estimate().to_implicit()
    updated = parse_profile({**profile_data, "implicit": implicit.model_dump(mode="json")})
    assert updated.implicit == implicit
    assert "90% between" in posterior.estimate().describe()
