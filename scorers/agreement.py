"""Agreement: candidates grouped by what they produce, and the groups ranked.

One idea serves two signals. For programs (selection by behaviour, as in CodeT's dual execution
agreement, MBR-exec and AlphaCode's clustering) a candidate's outcome is the tuple of what it did on
a list of inputs: a value it returned, or the exception (or timeout) it ended with. For answers
(self-consistency) it is the final answer. Candidates with equal outcomes form a group; a group's
size is the vote its outcome gets.

Values are equal by the judge's own rule (``values_equal`` in ``sandbox/wire.py``: floats within 1e-6,
containers element-wise); two raised outcomes are equal when they are of the same kind.

>>> a, b = [Returned(1), Returned(0.5)], [Returned(1), Returned(0.5000000001)]
>>> c = [Returned(2), Raised("ValueError")]
>>> [g.members for g in group_outcomes([a, c, b], behaviours_equal)]
[[0, 2], [1]]
>>> best = rank_behaviours([a, c, b], public_rates=[1.0, 1.0, 1.0])[0]
>>> best.members, best.size, best.unhandled
([0, 2], 2, 0)
>>> [(g.key, w) for g, w in rank_votes(group_outcomes(["8", "18", "18"], str.__eq__), [3.0, 1.0, 1.5])]
[('8', 3.0), ('18', 2.5)]

How groups are ordered is a ``GroupScore`` (``scorers/group_scores.py``); groups it scores alike go
to the more likely one (the members' mean log-probability per token), then to the one drawn first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sandbox.wire import values_equal
from scorers.group_scores import DEFAULT_SCORE, GroupScore

K = TypeVar("K")


@dataclass(frozen=True)
class Returned:
    """A call returned ``value`` (a plain built-in value)."""

    value: Any


@dataclass(frozen=True)
class Raised:
    """A call ended without a value: an exception's type name, ``Timeout``, ``MemoryError``..."""

    kind: str


Outcome = Returned | Raised
Behaviour = Sequence[Outcome]  # one outcome per input, in the inputs' order


def outcomes_equal(a: Outcome, b: Outcome) -> bool:
    """Two outcomes of one input are equal: both returned equal values, or both raised the same kind.

    >>> outcomes_equal(Returned(0.1 + 0.2), Returned(0.3)), outcomes_equal(Raised("Timeout"), Returned(None))
    (True, False)
    """
    if isinstance(a, Returned) and isinstance(b, Returned):
        return values_equal(a.value, b.value)
    if isinstance(a, Raised) and isinstance(b, Raised):
        return a.kind == b.kind
    return False


def behaviours_equal(a: Behaviour, b: Behaviour) -> bool:
    """Equal outcomes on every input (behaviours on different inputs are never equal)."""
    return len(a) == len(b) and all(map(outcomes_equal, a, b))


@dataclass
class Group(Generic[K]):
    """Candidates with one outcome: their indices (in the order given) and that outcome.

    ``public_rate`` is the members' mean public-test pass rate; ``unhandled`` counts the inputs on
    which this group raised while most candidates returned a value there; ``agreed`` counts the
    values the model stated for its own test calls that this group returns; ``likelihoods`` holds each
    member's mean log-probability per token (empty when the caller has none); ``pool`` is the number
    of candidates ranked with it, every group's together (0 when not ranked yet).
    """

    members: list[int]
    key: K
    public_rate: float = 0.0
    unhandled: int = 0
    likelihoods: list[float] = field(default_factory=list)
    agreed: int = 0
    score: tuple[float, ...] = ()
    pool: int = 0

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def likelihood(self) -> float:
        """The members' mean log-probability per token (0.0 when unknown)."""
        return sum(self.likelihoods) / len(self.likelihoods) if self.likelihoods else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "members": list(self.members),
            "size": self.size,
            "public_rate": round(self.public_rate, 4),
            "unhandled": self.unhandled,
            "agreed": self.agreed,
            "likelihood": round(self.likelihood, 4),
        }


def group_outcomes(keys: Sequence[K], equal: Callable[[K, K], bool]) -> list[Group[K]]:
    """Groups of equal keys in order of first appearance; a key joins the first group whose first
    member's key it equals (``equal`` need not be transitive: floats within a tolerance are not).

    >>> [g.members for g in group_outcomes(["18", "8", "18.0"], lambda a, b: float(a) == float(b))]
    [[0, 2], [1]]
    """
    groups: list[Group[K]] = []
    for i, key in enumerate(keys):
        for group in groups:
            if equal(group.key, key):
                group.members.append(i)
                break
        else:
            groups.append(Group([i], key))
    return groups


def rank_groups(
    groups: list[Group[K]],
    public_rates: Sequence[float] | None = None,
    likelihoods: Sequence[float] | None = None,
    score: GroupScore = DEFAULT_SCORE,
) -> list[Group[K]]:
    """``groups`` with their public pass rates, likelihoods and scores filled in, best first: by
    ``score``, then the more likely group, then the group drawn first."""
    pool = sum(g.size for g in groups)
    for g in groups:
        g.pool = pool
        if public_rates is not None:
            g.public_rate = sum(public_rates[i] for i in g.members) / g.size
        if likelihoods is not None:
            g.likelihoods = [likelihoods[i] for i in g.members]
        g.score = score(g)
    return sorted(groups, key=lambda g: (*g.score, g.likelihood, -g.members[0]), reverse=True)


def best_member(group: Group[K], public_rates: Sequence[float], likelihoods: Sequence[float] | None) -> int:
    """The member with the best public pass rate, then the most likely, then the first drawn.

    >>> best_member(Group([0, 1, 2], "x"), [1.0, 1.0, 0.5], [-0.9, -0.2, -0.1])
    1
    """
    return max(
        group.members,
        key=lambda i: (public_rates[i], likelihoods[i] if likelihoods is not None else 0.0, -i),
    )


def rank_votes(groups: list[Group[K]], weights: Sequence[float]) -> list[tuple[Group[K], float]]:
    """Groups with their vote (the sum of their members' ``weights``: 1 each is a plain majority
    vote), the largest vote first, ties to the group drawn first (self-consistency's vote; the
    answers' side of ``scorers/answers.py``)."""
    voted = [(g, sum(weights[i] for i in g.members)) for g in groups]
    return sorted(voted, key=lambda gw: (-gw[1], gw[0].members[0]))


def rank_behaviours(
    behaviours: Sequence[Behaviour],
    public_rates: Sequence[float] | None = None,
    likelihoods: Sequence[float] | None = None,
    score: GroupScore = DEFAULT_SCORE,
    expectations: Sequence[tuple[int, Any]] = (),
) -> list[Group[Behaviour]]:
    """Programs grouped by their behaviour on the same inputs and ranked: a group that raises where
    most candidates return a value loses to one that handles those inputs. ``expectations`` are
    the values the model stated for some inputs, as (input index, value): a group agrees with each
    one it returns (by the judge's rule).

    >>> ok, fragile = [Returned(0), Returned(1)], [Raised("IndexError"), Returned(1)]
    >>> [(g.members, g.unhandled) for g in rank_behaviours([fragile, fragile, ok, ok, ok])]
    [([2, 3, 4], 0), ([0, 1], 1)]
    >>> [(g.members, g.agreed) for g in rank_behaviours([fragile, ok], expectations=[(0, 0), (1, 1)])]
    [([1], 2), ([0], 1)]
    """
    groups = group_outcomes(behaviours, behaviours_equal)
    handled = _handled_inputs(behaviours)
    for g in groups:
        g.unhandled = sum(
            1 for j, outcome in enumerate(g.key) if isinstance(outcome, Raised) and j in handled
        )
        g.agreed = sum(
            1 for j, value in expectations if j < len(g.key) and outcomes_equal(g.key[j], Returned(value))
        )
    return rank_groups(groups, public_rates, likelihoods, score)


def _handled_inputs(behaviours: Sequence[Behaviour]) -> set[int]:
    """The inputs on which more than half of the candidates returned a value."""
    if not behaviours:
        return set()
    width = min(len(b) for b in behaviours)
    return {
        j for j in range(width) if 2 * sum(isinstance(b[j], Returned) for b in behaviours) > len(behaviours)
    }
