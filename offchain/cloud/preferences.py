"""Preferences learned by observation: a Bayesian posterior over risk aversion and theme tilts.

The model
---------
An investor values an outcome path ``o`` (expected annual return ``mu`` and volatility
``sigma``, both fractions per year, and theme exposures ``e_t`` in [0, 1]) with the
mean-variance utility::

    U(o) = mu - gamma / 2 * sigma**2 + TILT_UNIT * sum_t tilt_t * e_t

``gamma`` is the risk aversion (the coefficient the wealth plan uses), ``tilt_t`` in [-1, 1]
how much the investor likes theme ``t`` (1 means a full exposure is worth 1 percentage point
of expected return a year to them). Choices are noisy: between two paths the investor picks
``A`` with probability ``sigmoid(SHARPNESS * (U(A) - U(B)))`` (a logistic choice model).

The posterior lives on a grid: ``GAMMA_GRID`` (60 log-spaced points, 0.5 to 40) times
``TILT_GRID`` (7 points) for each of the four themes. The questionnaire only sets the prior:
a log-normal on gamma centred on the tolerance score's typical gamma, and a normal on each
tilt centred on 0.5 for the themes the investor named, 0 otherwise.

Observations are pairwise choices: a direct question ("which path would you rather own?")
or a reaction to a proposal (accepted = proposal over the current portfolio, rejected = the
current portfolio over the proposal, edited = the edited version over the proposal).

Asking
------
The next question is the candidate pair with the largest expected information gain (mutual
information between the answer and the parameters). Asking stops when the estimate is
certain enough - the posterior standard deviation of ``ln gamma`` is at most ``RISK_SD_TARGET``
(0.25, i.e. a 90% interval of about x/÷ 1.5) and that of every theme the investor named is at
most ``TILT_SD_TARGET`` (0.3) - or after ``MAX_QUESTIONS`` = 20 questions, whichever is first.
In simulation (tests/cloud/test_preferences.py) a risk-only elicitation is certain after 7 to 14
questions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

import numpy as np

from offchain.cloud.profile import ImplicitPreferences, Profile, Theme
from offchain.errors import InvalidInput

GAMMA_GRID = np.geomspace(0.5, 40.0, 60)
TILT_GRID = np.linspace(-1.0, 1.0, 7)
THEMES: tuple[Theme, ...] = tuple(Theme)
SHARPNESS = 80.0  # logit per unit of annual certainty-equivalent return (1% -> 0.8)
TILT_UNIT = 0.02  # a tilt of 1 is worth 2 percentage points of expected return a year
PRIOR_LOG_SD = 0.8
PRIOR_TILT_SD = 0.4
RISK_SD_TARGET = 0.25
TILT_SD_TARGET = 0.3
MAX_QUESTIONS = 20
# Typical gamma for each questionnaire tolerance score (1 cautious ... 5 adventurous).
TOLERANCE_GAMMA = {1: 12.0, 2: 7.0, 3: 4.0, 4: 2.5, 5: 1.5}
# Risk category (1..5) from gamma: the first row whose bound gamma is at least.
CATEGORY_BOUNDS = ((10.0, 1), (5.5, 2), (3.0, 3), (1.75, 4), (0.0, 5))


@dataclass(frozen=True)
class OutcomePath:
    """One way the investor's money could behave: ``mu``/``sigma`` per year (fractions)."""

    mu: float
    sigma: float
    exposures: dict[Theme, float] = field(default_factory=dict)
    label: str = ""

    def __post_init__(self) -> None:
        if not -0.5 < self.mu < 0.5:
            raise InvalidInput("mu", "an annual expected return between -0.5 and 0.5", self.mu)
        if not 0 <= self.sigma < 1:
            raise InvalidInput("sigma", "an annual volatility in [0, 1)", self.sigma)
        for theme, exposure in self.exposures.items():
            if theme not in THEMES:
                raise InvalidInput("exposures", f"themes among {[t.value for t in THEMES]}",
                                   theme)
            if not 0 <= exposure <= 1:
                raise InvalidInput(f"exposures.{theme}", "a fraction in [0, 1]", exposure)

    def describe(self, amount: float = 100_000, years: int = 10) -> str:
        """Plain-language path of ``amount`` USD over ``years`` (median and 1-in-20 cases)."""
        bad = self.mu - 1.645 * self.sigma
        good = self.mu + 1.645 * self.sigma
        log_mu = math.log1p(self.mu) - self.sigma**2 / 2
        median = amount * math.exp(log_mu * years)
        low = amount * math.exp(log_mu * years - 1.645 * self.sigma * math.sqrt(years))
        themes = "".join(f", {e:.0%} in {t.value.replace('_', ' ')}"
                         for t, e in self.exposures.items() if e > 0)
        return (
            f"typical year {self.mu:+.1%}, a bad year (1 in 20) {bad:+.1%}, a good year "
            f"{good:+.1%}; ${amount:,.0f} becomes ${median:,.0f} in {years} years "
            f"(${low:,.0f} if unlucky){themes}"
        )

    def _theme_vector(self) -> np.ndarray:
        return np.array([self.exposures.get(t, 0.0) for t in THEMES])


@dataclass(frozen=True)
class Question:
    """A choice between two outcome paths; ``a`` is the safer one for risk questions."""

    a: OutcomePath
    b: OutcomePath
    key: str


class Reaction(StrEnum):
    """How the investor reacted to a proposal."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    EDITED = "edited"


@dataclass(frozen=True)
class Estimate:
    """The posterior summary shown to the investor and written into the profile."""

    risk_aversion: float
    risk_aversion_low: float
    risk_aversion_high: float
    log_sd: float
    theme_tilts: dict[Theme, float]
    theme_sd: dict[Theme, float]
    observations: int

    @property
    def risk_category(self) -> int:
        """Risk category 1 (most cautious) to 5 implied by the posterior mean of gamma."""
        return category_for_gamma(self.risk_aversion)

    def to_implicit(self) -> ImplicitPreferences:
        """The estimate as the profile's ``implicit`` section (decimals, 2 places)."""
        def q(value: float) -> Decimal:
            return Decimal(str(round(value, 2)))

        return ImplicitPreferences(
            risk_aversion=q(self.risk_aversion),
            risk_aversion_low=min(q(self.risk_aversion_low), q(self.risk_aversion)),
            risk_aversion_high=max(q(self.risk_aversion_high), q(self.risk_aversion)),
            theme_tilts={t: q(v) for t, v in self.theme_tilts.items()},
            observations=self.observations,
        )

    def describe(self) -> str:
        """One line: the estimate with its 90% credible interval."""
        return (
            f"risk aversion {self.risk_aversion:.1f} (90% between {self.risk_aversion_low:.1f} "
            f"and {self.risk_aversion_high:.1f}; category {self.risk_category}) after "
            f"{self.observations} observations"
        )


def category_for_gamma(gamma: float) -> int:
    """Risk category 1..5 for a risk aversion ``gamma`` (see ``CATEGORY_BOUNDS``)."""
    for bound, category in CATEGORY_BOUNDS:
        if gamma >= bound:
            return category
    return 5


def question_bank() -> list[Question]:
    """Candidate questions: risk trade-offs whose indifference gamma spans the grid, and
    theme trade-offs (the same path with a theme, for less expected return)."""
    questions: list[Question] = []
    sigma_pairs = (
        (0.02, 0.06), (0.04, 0.10), (0.06, 0.14), (0.08, 0.18), (0.10, 0.24), (0.12, 0.30)
    )
    for target in np.geomspace(0.7, 30.0, 18):
        for low, high in sigma_pairs:
            extra = target / 2 * (high**2 - low**2)
            if 0.005 <= extra <= 0.06:
                a = OutcomePath(0.03 + 0.3 * low, low, label="A")
                b = OutcomePath(a.mu + extra, high, label="B")
                questions.append(Question(a, b, f"risk:{target:.2f}:{low:.2f}"))
    for theme in THEMES:
        for cost in (0.0025, 0.005, 0.01, 0.015, 0.02, 0.03):
            a = OutcomePath(0.06, 0.12, label="A")
            b = OutcomePath(0.06 - cost, 0.12, {theme: 1.0}, label="B")
            questions.append(Question(a, b, f"theme:{theme.value}:{cost}"))
    return questions


class PreferencePosterior:
    """Grid posterior over (gamma, tilt per theme); update with choices, ask, summarise."""

    def __init__(self, tolerance: int, named_themes: tuple[Theme, ...] = ()) -> None:
        if tolerance not in TOLERANCE_GAMMA:
            raise InvalidInput("risk.tolerance", "an integer 1..5", tolerance)
        self.named_themes = tuple(sorted(set(named_themes)))
        log_gamma = np.log(GAMMA_GRID)
        prior_gamma = -0.5 * ((log_gamma - math.log(TOLERANCE_GAMMA[tolerance])) / PRIOR_LOG_SD)**2
        shape = (len(GAMMA_GRID),) + (len(TILT_GRID),) * len(THEMES)
        log_weights = prior_gamma.reshape((-1,) + (1,) * len(THEMES)) * np.ones(shape)
        for axis, theme in enumerate(THEMES, start=1):
            centre = 0.5 if theme in self.named_themes else 0.0
            prior = -0.5 * ((TILT_GRID - centre) / PRIOR_TILT_SD) ** 2
            log_weights = log_weights + prior.reshape(_axis_shape(axis))
        self._log_weights = log_weights - log_weights.max()
        self.observations = 0
        self.asked: list[str] = []

    @classmethod
    def from_profile(cls, profile: Profile) -> PreferencePosterior:
        """Prior from the profile's questionnaire (tolerance score and named themes)."""
        return cls(profile.risk.tolerance, tuple(profile.explicit.themes))

    @property
    def weights(self) -> np.ndarray:
        """Normalised posterior weights on the grid."""
        w = np.exp(self._log_weights - self._log_weights.max())
        return w / w.sum()

    def _utility(self, path: OutcomePath) -> np.ndarray:
        utility = path.mu - GAMMA_GRID.reshape(_axis_shape(0)) / 2 * path.sigma**2
        for axis, exposure in enumerate(path._theme_vector(), start=1):
            if exposure:
                utility = utility + TILT_UNIT * exposure * TILT_GRID.reshape(_axis_shape(axis))
        return utility

    def prob_first(self, first: OutcomePath, second: OutcomePath) -> np.ndarray:
        """P(the investor picks ``first`` over ``second``) at every grid point."""
        return _sigmoid(SHARPNESS * (self._utility(first) - self._utility(second)))

    def observe_choice(self, chosen: OutcomePath, other: OutcomePath) -> None:
        """Update with one revealed choice of ``chosen`` over ``other``."""
        p = self.prob_first(chosen, other)
        self._log_weights = self._log_weights + np.log(np.clip(p, 1e-12, 1.0))
        self._log_weights -= self._log_weights.max()
        self.observations += 1

    def answer(self, question: Question, picked: str) -> None:
        """Record the investor's answer ``"a"`` or ``"b"`` to ``question``."""
        if picked not in ("a", "b"):
            raise InvalidInput("answer", "'a' or 'b'", picked)
        chosen, other = (question.a, question.b) if picked == "a" else (question.b, question.a)
        self.observe_choice(chosen, other)
        self.asked.append(question.key)

    def react(
        self,
        proposal: OutcomePath,
        current: OutcomePath,
        reaction: Reaction | str,
        edited: OutcomePath | None = None,
    ) -> None:
        """Update with the investor's reaction to a proposal (see the module docstring).

        Raises :class:`InvalidInput` for an unknown reaction or an edit without ``edited``.
        """
        try:
            reaction = Reaction(reaction)
        except ValueError:
            raise InvalidInput("reaction", "accepted, rejected or edited", reaction) from None
        if reaction is Reaction.ACCEPTED:
            self.observe_choice(proposal, current)
        elif reaction is Reaction.REJECTED:
            self.observe_choice(current, proposal)
        else:
            if edited is None:
                raise InvalidInput("edited", "the edited proposal's outcome path")
            self.observe_choice(edited, proposal)

    def expected_information_gain(
        self, question: Question, weights: np.ndarray | None = None
    ) -> float:
        """Mutual information (bits) between the answer to ``question`` and the parameters.

        The answer probability depends only on the axes the question varies (gamma when the
        volatilities differ, a tilt when the exposures differ), so it is computed on the
        posterior marginal over those axes: exact, and much cheaper than the full grid.
        """
        w = self.weights if weights is None else weights
        p = self.prob_first(question.a, question.b)
        involved = tuple(axis for axis in range(w.ndim) if p.shape[axis] > 1)
        summed = tuple(axis for axis in range(w.ndim) if axis not in involved)
        marginal_w = w.sum(axis=summed, keepdims=True) if summed else w
        p = np.broadcast_to(p, marginal_w.shape)
        answer_a = float((marginal_w * p).sum())
        return _entropy(answer_a) - float((marginal_w * _entropy_array(p)).sum())

    def next_question(self, bank: list[Question] | None = None) -> Question | None:
        """The most informative question not yet asked, or ``None`` if asking should stop."""
        if self.is_certain() or len(self.asked) >= MAX_QUESTIONS:
            return None
        candidates = [q for q in (bank or question_bank()) if q.key not in self.asked]
        candidates = [q for q in candidates if self._relevant(q)]
        if not candidates:
            return None
        weights = self.weights
        return max(candidates, key=lambda q: self.expected_information_gain(q, weights))

    def _relevant(self, question: Question) -> bool:
        if not question.key.startswith("theme:"):
            return True
        return question.key.split(":")[1] in {t.value for t in self.named_themes}

    def is_certain(self) -> bool:
        """Whether the estimate meets ``RISK_SD_TARGET`` and ``TILT_SD_TARGET`` (named themes)."""
        estimate = self.estimate()
        if estimate.log_sd > RISK_SD_TARGET:
            return False
        return all(estimate.theme_sd[t] <= TILT_SD_TARGET for t in self.named_themes)

    def estimate(self) -> Estimate:
        """Posterior mean of gamma with its 90% credible interval; tilt means and sds."""
        w = self.weights
        gamma_marginal = w.reshape(len(GAMMA_GRID), -1).sum(axis=1)
        log_gamma = np.log(GAMMA_GRID)
        mean_log = float((gamma_marginal * log_gamma).sum())
        sd_log = math.sqrt(max(float((gamma_marginal * (log_gamma - mean_log) ** 2).sum()), 0.0))
        cdf = np.cumsum(gamma_marginal)
        low = float(GAMMA_GRID[min(np.searchsorted(cdf, 0.05), len(cdf) - 1)])
        high = float(GAMMA_GRID[min(np.searchsorted(cdf, 0.95), len(cdf) - 1)])
        tilts: dict[Theme, float] = {}
        sds: dict[Theme, float] = {}
        for axis, theme in enumerate(THEMES, start=1):
            other = tuple(i for i in range(w.ndim) if i != axis)
            marginal = w.sum(axis=other)
            mean = float((marginal * TILT_GRID).sum())
            tilts[theme] = mean
            sds[theme] = math.sqrt(max(float((marginal * (TILT_GRID - mean) ** 2).sum()), 0.0))
        return Estimate(
            risk_aversion=float(math.exp(mean_log)),
            risk_aversion_low=low,
            risk_aversion_high=high,
            log_sd=sd_log,
            theme_tilts=tilts,
            theme_sd=sds,
            observations=self.observations,
        )


def _axis_shape(axis: int) -> tuple[int, ...]:
    shape = [1] * (1 + len(THEMES))
    shape[axis] = -1
    return tuple(shape)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _entropy(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def _entropy_array(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
