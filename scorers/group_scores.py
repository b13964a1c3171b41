"""How groups of candidates that behave alike are scored: one small rule each, higher is better.

A rule maps a group (``scorers/agreement.py``: its size, its members' mean public-test pass rate,
the inputs it leaves unhandled and its members' likelihoods) to a tuple compared in order; groups
a rule scores alike go to the more likely group, then to the one drawn first (``rank_groups``).

- ``PublicFirst``: the public pass rate strictly first, then fewer unhandled inputs, then size. A
  lone sample that passes every docstring example beats a large group that fails one doubtful
  example.
- ``DualAgreement``: CodeT's dual execution agreement, public pass rate x group size (CodeT: tests
  passed x programs that agree), then fewer unhandled inputs, then size. Public tests and the
  other samples vote together, so three samples that agree and pass 2 of 3 examples (score 2) beat
  one that passes all 3 (score 1).
- ``HandledFirst``: fewer unhandled inputs strictly first, then dual agreement.
- ``WeightedAgreement``: dual agreement with each member's vote weighted by its per-token
  probability (the geometric mean of its tokens' probabilities), so confident samples count more.
- ``ShareFirst``: the public pass rate strictly first, then the group's size only when the group
  holds at least ``min_share`` of the candidates; smaller groups all count as size 0, so among them
  the more likely group wins. Inputs a group raised on are not counted: the extra inputs (mutations
  of the examples, the model's calls) can lie outside the function's domain, where raising is
  right, and a program that hard-codes the examples' answer "handles" every input. With a small
  model, two or three wrong samples that share a bug agree by chance: a vote that small is noise
  next to the likelihood.
- ``StatedFirst``, ``ShareThenStated``, ``StatedAgreement``: the model's own tests. The calls the
  model writes often state the value they should return (``f(3) == 9``, ``f(0) ==> (1, 0)``), as
  CodeT's generated tests do; a group *agrees* with each stated value it returns. ``public-stated``
  ranks agreement right after the public pass rate, ``public-share-stated`` (the default) only
  after ``public-share``'s size, before the likelihood, and ``public-codet`` by size x agreement.
  A 0.5B model states many wrong values, so agreement decides least where it comes last.

>>> from scorers.agreement import Group
>>> lone = Group([0], "a", public_rate=1.0)
>>> crowd = Group([1, 2, 3], "b", public_rate=2 / 3)
>>> PublicFirst()(lone) > PublicFirst()(crowd), DualAgreement()(lone) > DualAgreement()(crowd)
(True, False)
>>> sorted(GROUP_SCORES)  # doctest: +NORMALIZE_WHITESPACE
['dual', 'dual-weighted', 'handled-first', 'public-codet', 'public-first', 'public-share',
 'public-share-stated', 'public-stated']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class GroupStats(Protocol):
    """What a rule reads of a group (``scorers/agreement.py``'s ``Group`` has it all)."""

    @property
    def size(self) -> int: ...

    @property
    def public_rate(self) -> float: ...

    @property
    def unhandled(self) -> int: ...

    @property
    def likelihoods(self) -> Sequence[float]: ...

    @property
    def agreed(self) -> int: ...

    @property
    def pool(self) -> int: ...


class GroupScore(Protocol):
    """A rule that scores a group; tuples compare in order, higher first."""

    @property
    def name(self) -> str: ...

    def __call__(self, group: GroupStats) -> tuple[float, ...]: ...


@dataclass(frozen=True)
class PublicFirst:
    """Public pass rate, then fewer unhandled inputs, then the larger group.

    >>> from scorers.agreement import Group
    >>> PublicFirst()(Group([0, 4], "x", public_rate=0.5, unhandled=1))
    (0.5, -1, 2)
    """

    name: str = "public-first"

    def __call__(self, group: GroupStats) -> tuple[float, ...]:
        return (group.public_rate, -group.unhandled, group.size)


@dataclass(frozen=True)
class DualAgreement:
    """CodeT's dual agreement (public pass rate x size), then fewer unhandled inputs, then size.

    >>> from scorers.agreement import Group
    >>> DualAgreement()(Group([0, 4], "x", public_rate=0.5, unhandled=1))
    (1.0, -1, 2)
    """

    name: str = "dual"

    def __call__(self, group: GroupStats) -> tuple[float, ...]:
        return (group.public_rate * group.size, -group.unhandled, group.size)


@dataclass(frozen=True)
class HandledFirst:
    """Fewer unhandled inputs, then dual agreement, then size.

    >>> from scorers.agreement import Group
    >>> HandledFirst()(Group([0, 4], "x", public_rate=0.5, unhandled=1))
    (-1, 1.0, 2)
    """

    name: str = "handled-first"

    def __call__(self, group: GroupStats) -> tuple[float, ...]:
        return (-group.unhandled, group.public_rate * group.size, group.size)


@dataclass(frozen=True)
class WeightedAgreement:
    """Public pass rate x the members' summed per-token probabilities, then fewer unhandled
    inputs, then size (without likelihoods every vote weighs 1: dual agreement).

    >>> from scorers.agreement import Group
    >>> round(WeightedAgreement()(Group([0, 4], "x", 0.5, 0, [math.log(0.9), math.log(0.5)]))[0], 4)
    0.7
    """

    name: str = "dual-weighted"

    def __call__(self, group: GroupStats) -> tuple[float, ...]:
        votes = sum(math.exp(x) for x in group.likelihoods) if group.likelihoods else group.size
        return (group.public_rate * votes, -group.unhandled, group.size)


@dataclass(frozen=True)
class ShareFirst:
    """Public pass rate, then the group's size if it holds at least ``min_share`` of the candidates
    (else 0: ties among small groups go to the more likely one); inputs left unhandled do not count.

    >>> from scorers.agreement import Group
    >>> pair, lone = Group([0, 1], "x", 1.0, pool=16), Group([2], "y", 1.0, pool=16)
    >>> quarter = Group([3, 4, 5, 6], "z", 1.0, unhandled=2, pool=16)
    >>> ShareFirst()(pair), ShareFirst()(lone), ShareFirst()(quarter)
    ((1.0, 0), (1.0, 0), (1.0, 4))
    """

    name: str = "public-share"
    min_share: float = 0.25

    def __call__(self, group: GroupStats) -> tuple[float, ...]:
        return (group.public_rate, share_size(group, self.min_share))


def share_size(group: GroupStats, min_share: float) -> int:
    """The group's size if it holds at least ``min_share`` of the candidates, else 0."""
    pool = group.pool or group.size
    return group.size if group.size >= min_share * pool else 0


@dataclass(frozen=True)
class StatedFirst:
    """Public pass rate, then the number of the model's stated values the group returns (the
    model's own test calls, ``f(3) == 9``, as CodeT's generated tests), then ``public-share``'s
    size.

    >>> from scorers.agreement import Group
    >>> StatedFirst()(Group([0, 1], "x", 1.0, agreed=3, pool=16))
    (1.0, 3, 0)
    """

    name: str = "public-stated"
    min_share: float = 0.25

    def __call__(self, group: GroupStats) -> tuple[float, ...]:
        return (group.public_rate, group.agreed, share_size(group, self.min_share))


@dataclass(frozen=True)
class ShareThenStated:
    """``public-share``, then the number of stated values the group returns (before likelihood).

    >>> from scorers.agreement import Group
    >>> ShareThenStated()(Group([0, 1, 2, 3], "x", 1.0, agreed=2, pool=16))
    (1.0, 4, 2)
    """

    name: str = "public-share-stated"
    min_share: float = 0.25

    def __call__(self, group: GroupStats) -> tuple[float, ...]:
        return (group.public_rate, share_size(group, self.min_share), group.agreed)


@dataclass(frozen=True)
class StatedAgreement:
    """Public pass rate, then CodeT's dual agreement over the stated values: the group's size x
    the stated values it returns, then ``public-share``'s size.

    >>> from scorers.agreement import Group
    >>> StatedAgreement()(Group([0, 1], "x", 1.0, agreed=3, pool=16))
    (1.0, 6, 0)
    """

    name: str = "public-codet"
    min_share: float = 0.25

    def __call__(self, group: GroupStats) -> tuple[float, ...]:
        return (group.public_rate, group.size * group.agreed, share_size(group, self.min_share))


GROUP_SCORES: dict[str, GroupScore] = {
    s.name: s
    for s in (
        PublicFirst(),
        DualAgreement(),
        HandledFirst(),
        WeightedAgreement(),
        ShareFirst(),
        StatedFirst(),
        ShareThenStated(),
        StatedAgreement(),
    )
}
DEFAULT_SCORE: GroupScore = GROUP_SCORES["public-share-stated"]
