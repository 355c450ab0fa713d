"""Fewer training conversations as a setting: a seeded subset that is nested across sizes.

For "how many examples are enough" every size must be drawn from the same pool in the same
order: the 50 conversations of a 50-example run are exactly the first 50 of the 100-example
run, so a curve over sizes measures size, not a different draw.
"""

from __future__ import annotations

import random
from typing import Sequence, TypeVar

T = TypeVar("T")


def nested_subset(items: Sequence[T], n: int, seed: str | int) -> list[T]:
    """``n`` of ``items`` (all when ``n`` is 0 or at least their number), in their original order.

    The choice is a prefix of one seeded permutation of ``range(len(items))``, so for one seed and
    one pool a smaller ``n`` always picks a subset of a larger one."""
    if n < 0:
        raise ValueError(f"a subset size must be >= 0, got {n}")
    if n == 0 or n >= len(items):
        return list(items)
    order = list(range(len(items)))
    random.Random(f"nested-subset:{seed}").shuffle(order)
    return [items[i] for i in sorted(order[:n])]
