"""Which sweep commands made the jobs of a sweep directory.

Hydra rewrites a sweep directory's ``multirun.yaml`` at every ``-m`` run, so a second command
pointed at the same directory (the same experiment name, or the same ``hydra.sweep.dir``)
leaves only its own command there while the jobs of both sit side by side. Every job keeps
its own record in ``.hydra/``: ``hydra.yaml`` (the job's overrides, the sweeper's ``params``
from the config, its number in the sweep) or at least ``overrides.yaml``. Jobs are grouped
by the shape of what they were given (which keys were overridden, the sweeper's params, the
``hydra.*`` overrides); a job number met twice in a group means two commands of the same shape,
told apart by the order the jobs started in. A group's command is the overrides its jobs share
plus each varying key with its values; the command in ``multirun.yaml`` replaces the rebuilt
text of the group it matches, since it is the one typed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from analysis.collect import _is_sweep_value as is_sweep_value
from analysis.jobdir import HYDRA_DIR, Problem, natural_key, read_yaml

PROG = "sft-sweep"


@dataclass
class SweepCommand:
    """One sweep command and the jobs it made."""

    overrides: list[str]
    jobs: list[str] = field(default_factory=list)
    #: ``key=values`` the config's sweeper swept (not typed on the command line).
    config_sweeps: list[str] = field(default_factory=list)
    #: Taken verbatim from ``multirun.yaml`` (else rebuilt from the jobs' records).
    typed: bool = False
    #: A ``-m`` run (Hydra's mode MULTIRUN); a single run's job has mode RUN.
    multirun: bool = True

    def text(self) -> str:
        return " ".join([PROG, *(["-m"] if self.multirun else []), *self.overrides])

    def notes(self) -> str:
        """``6 jobs; the config sweeps optim.lr=3e-5,3e-4``."""
        n = len(self.jobs)
        notes = [f"{n} job{'s' if n != 1 else ''}" if n else "no job of it found"]
        if self.config_sweeps:
            notes.append("the config sweeps " + " ".join(self.config_sweeps))
        if not self.typed:
            notes.append("rebuilt from the jobs' .hydra/ records")
        return "; ".join(notes)

    def describe(self) -> str:
        """``sft-sweep -m ... (6 jobs; the config sweeps optim.lr=3e-5,3e-4)``."""
        return f"{self.text()} ({self.notes()})"


@dataclass
class _JobRecord:
    job: str
    overrides: list[str]
    sweeper_params: dict[str, str]
    hydra_overrides: list[str]
    num: int | None
    started: float
    multirun: bool = True

    def keys(self) -> tuple[str, ...]:
        return tuple(sorted(_key(o) for o in self.overrides))


def sweep_commands(root: str | Path, jobs: Sequence[tuple[str, str | Path]],
                   problems: list[Problem] | None = None) -> list[SweepCommand]:
    """The commands that made ``jobs`` (``(job id, job dir)`` pairs under sweep directory
    ``root``), in the order they ran. Jobs without Hydra records belong to no command."""
    problems = problems if problems is not None else []
    records = [r for job, path in jobs if (r := _read_job(job, Path(path), problems)) is not None]
    groups: dict[str, list[_JobRecord]] = {}
    for r in records:
        shape = json.dumps([r.keys(), sorted(r.sweeper_params.items()), r.hydra_overrides, r.multirun])
        groups.setdefault(shape, []).append(r)
    commands = [_command(part) for group in groups.values() for part in _split_reruns(group)]
    commands.sort(key=lambda c: c[0])
    out = [c for _, c in commands]
    typed = _typed_command(Path(root), problems)
    if typed is not None:
        match = next((c for c in reversed(out) if _same_command(c, typed)), None)
        if match is not None:
            match.overrides, match.typed = typed, True
        else:
            out.append(SweepCommand(typed, typed=True))
    return out


def _read_job(job: str, path: Path, problems: list[Problem]) -> _JobRecord | None:
    hydra_yaml = path / HYDRA_DIR / "hydra.yaml"
    overrides_yaml = path / HYDRA_DIR / "overrides.yaml"
    if hydra_yaml.exists():
        raw = read_yaml(hydra_yaml, problems)
        hydra = raw.get("hydra") if isinstance(raw, dict) else None
        if isinstance(hydra, dict):
            ov = (hydra.get("overrides") or {})
            params = (hydra.get("sweeper") or {}).get("params") or {}
            num = (hydra.get("job") or {}).get("num")
            return _JobRecord(
                job, [str(o) for o in ov.get("task") or []],
                {str(k): str(v) for k, v in params.items()} if isinstance(params, dict) else {},
                sorted(str(o) for o in ov.get("hydra") or [] if not str(o).startswith("hydra.mode=")),
                num if isinstance(num, int) else None, _mtime(hydra_yaml),
                multirun=str(hydra.get("mode") or "MULTIRUN").upper() != "RUN")
    if overrides_yaml.exists():
        raw = read_yaml(overrides_yaml, problems)
        if isinstance(raw, list):
            return _JobRecord(job, [str(o) for o in raw], {}, [], None, _mtime(overrides_yaml))
    return None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return math.inf


def _split_reruns(group: list[_JobRecord]) -> list[list[_JobRecord]]:
    """One group of jobs with the same shape, cut where a job number repeats (jobs in the
    order they started): each part is one command's jobs."""
    if any(r.num is None for r in group):
        return [group]
    parts: list[list[_JobRecord]] = [[]]
    seen: set[int] = set()
    for r in sorted(group, key=lambda r: (r.started, r.num)):
        if r.num in seen:
            parts.append([])
            seen = set()
        parts[-1].append(r)
        seen.add(r.num)
    return parts


def _command(jobs: list[_JobRecord]) -> tuple[float, SweepCommand]:
    first = jobs[0]
    values: dict[str, list[str]] = {}
    for r in jobs:
        for o in r.overrides:
            values.setdefault(_key(o), [])
            v = o.split("=", 1)[1] if "=" in o else ""
            if v not in values[_key(o)]:
                values[_key(o)].append(v)
    overrides, config_sweeps = [], []
    for o in first.overrides:
        key = _key(o)
        vals = values[key]
        from_config = first.sweeper_params.get(key.lstrip("+~")) if first.multirun else None
        # One value of a list the config sweeps, in every job of the command: typed on the command
        # line (which overrides the config's sweep), not swept by the config.
        typed_one = len(vals) == 1 and _lists_several(from_config or "")
        if from_config is not None and _within(vals, from_config) and not typed_one:
            config_sweeps.append(f"{key.lstrip('+~')}={from_config}")
        elif len(vals) == 1:
            overrides.append(o)
        else:
            vals = sorted(vals, key=_value_order)
            overrides.append(f"{o.split('=', 1)[0]}={','.join(vals)}")
    jobs_sorted = sorted((r.job for r in jobs), key=natural_key)
    return min(r.started for r in jobs), SweepCommand(overrides, jobs_sorted, config_sweeps,
                                                      multirun=first.multirun)


def _key(override: str) -> str:
    return override.split("=", 1)[0].strip()


def _value_order(v: str) -> tuple:
    try:
        return (0, float(v), "")
    except ValueError:
        return (1, 0.0, v)


def _within(values: list[str], spec: str) -> bool:
    """Whether a job's values come from a sweeper's ``a,b,c`` list (numbers compared as numbers;
    ``range(..)`` / ``interval(..)`` and other sweep syntax are trusted)."""
    if "(" in spec:
        return True
    allowed = [s.strip() for s in spec.split(",")]
    nums = {_as_float(a) for a in allowed}
    return all(v in allowed or (_as_float(v) is not None and _as_float(v) in nums) for v in values)


def _lists_several(spec: str) -> bool:
    """Whether a sweeper spec is a plain list of two or more values (``3e-4,3e-3``)."""
    return "(" not in spec and len([v for v in spec.split(",") if v.strip()]) > 1


def _as_float(v: str) -> float | None:
    try:
        return float(v)
    except ValueError:
        return None


def _typed_command(root: Path, problems: list[Problem]) -> list[str] | None:
    path = root / "multirun.yaml"
    if not path.exists():
        return None
    raw = read_yaml(path, problems)
    task = ((raw or {}).get("hydra") or {}).get("overrides", {}).get("task") if isinstance(raw, dict) else None
    return [str(t) for t in task] if isinstance(task, list) else None


def _same_command(cmd: SweepCommand, typed: list[str]) -> bool:
    """Whether the typed overrides of ``multirun.yaml`` are the ones ``cmd`` was rebuilt from:
    the same fixed overrides, and the same keys swept on the command line."""
    def split(items: list[str]) -> tuple[set, set[str]]:
        fixed = [o for o in items if not is_sweep_value(o.split("=", 1)[-1])]
        return {_normal(o) for o in fixed}, {_key(o) for o in items if o not in fixed}
    return split(cmd.overrides) == split(typed)


def _normal(override: str) -> tuple[str, object]:
    """(key, value) with numbers compared as numbers: the job records ``0.003`` for a typed ``3e-3``."""
    key, _, v = override.partition("=")
    num = _as_float(v)
    return key.strip(), v if num is None else num


__all__ = ["SweepCommand", "sweep_commands"]
