"""Hydra sweep syntax -> Optuna distributions.

The sweeper's ``params`` (and command-line sweeps) use Hydra's override grammar:

  ``choice(a, b, c)`` or ``a,b,c``      categorical
  ``range(start, stop[, step])``       integers (or floats) from ``start`` up to, not including, ``stop``
  ``interval(low, high)``              a float in [low, high]
  ``tag(log, interval(low, high))``    the same, sampled on a log scale
  ``tag(int, interval(low, high))``    an integer in [low, high] (``log`` may be added)
  ``shuffle(...)``                     order is meaningless to a sampler: a categorical
  anything else                        a fixed value, passed to every trial unchanged

Hydra's parser does the parsing; this module only maps its sweep objects onto distributions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep, Transformer
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution


class SearchSpaceError(ValueError):
    """A sweep dimension Optuna cannot sample (the message names the parameter)."""


@dataclass
class SearchSpace:
    distributions: dict[str, BaseDistribution]
    fixed: dict[str, str]  # name -> the override's value, as written

    def grid(self) -> dict[str, list[Any]]:
        """Every value of every dimension, for Optuna's grid sampler (discrete dimensions only)."""
        out: dict[str, list[Any]] = {}
        for name, dist in self.distributions.items():
            if isinstance(dist, CategoricalDistribution):
                out[name] = list(dist.choices)
            elif isinstance(dist, (IntDistribution, FloatDistribution)) and dist.step is not None and not dist.log:
                n = int(round((dist.high - dist.low) / dist.step))
                vals = [dist.low + i * dist.step for i in range(n + 1)]
                out[name] = [int(v) for v in vals] if isinstance(dist, IntDistribution) else vals
            else:
                raise SearchSpaceError(f"the grid sampler needs choice() or range() values; {name} is {dist}")
        return out


def _plain(values: list[Any], name: str) -> list[Any]:
    for v in values:
        if not isinstance(v, (str, int, float, bool, type(None))):
            raise SearchSpaceError(f"{name}: a choice must be a string, number, bool or null, got {v!r}")
    return values


def distribution(override: Override) -> BaseDistribution:
    """The Optuna distribution of one sweep override."""
    name = override.get_key_element()
    value = override.value()
    if isinstance(value, ChoiceSweep) or (isinstance(value, RangeSweep) and value.shuffle):
        choices = _plain(list(override.sweep_iterator(transformer=Transformer.encode)), name)
        if value.shuffle:  # Hydra shuffled them; a sampler needs the same space on every run
            choices.sort(key=lambda v: (type(v).__name__, v))
        return CategoricalDistribution(choices)
    if isinstance(value, RangeSweep):
        values = list(override.sweep_iterator())
        if not values:
            raise SearchSpaceError(f"{name}: {override.get_value_element_as_str()} is empty")
        if all(isinstance(v, int) for v in values) and isinstance(value.step, int):
            return IntDistribution(values[0], values[-1], step=value.step) if value.step > 0 else \
                IntDistribution(values[-1], values[0], step=-value.step)
        lo, hi, step = min(values), max(values), abs(float(value.step))
        return FloatDistribution(float(lo), float(hi), step=step)
    if isinstance(value, IntervalSweep):
        lo, hi = value.start, value.end
        if lo is None or hi is None or not lo < hi:
            raise SearchSpaceError(f"{name}: interval({lo}, {hi}) needs low < high")
        log = "log" in value.tags
        if log and lo <= 0:
            raise SearchSpaceError(f"{name}: a log-scale interval needs low > 0, got {lo}")
        if "int" in value.tags:
            if lo != int(lo) or hi != int(hi):
                raise SearchSpaceError(f"{name}: tag(int, ...) needs whole bounds, got interval({lo}, {hi})")
            return IntDistribution(int(lo), int(hi), log=log)
        return FloatDistribution(float(lo), float(hi), log=log)
    raise SearchSpaceError(f"{name}: {override.get_value_element_as_str()} is not a sweep Optuna can sample")


def parse(arguments: list[str]) -> SearchSpace:
    """Sweep overrides (``key=value`` strings) -> search space; later overrides of a key win."""
    space = SearchSpace({}, {})
    for override in OverridesParser.create().parse_overrides(arguments):
        name = override.get_key_element()
        space.distributions.pop(name, None)
        space.fixed.pop(name, None)
        if override.is_sweep_override():
            space.distributions[name] = distribution(override)
        else:
            space.fixed[name] = override.get_value_element_as_str()
    return space
