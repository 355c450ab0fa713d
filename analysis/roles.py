"""What a job table's setting column is: its description in the config schema.

A column named by a schema key (``optim.lr``, ``data.datasets.main.format``) is described there
(``sft_sweep.config.SETTINGS``): its label, how its values print, its colours, the part it plays
in figures and findings (its role). A column no schema describes, from a job file written by
another tool or an older version, is recognised by its name (``_foreign_role``) and then shown
like the schema setting that plays the same role.
"""

from __future__ import annotations

from collections.abc import Sequence

from sft_sweep.config import SETTINGS
from sft_sweep.setting import Setting

#: Roles a foreign column may play, in the order a column matching several takes the first.
FOREIGN_ROLES = ("lr", "epochs", "replay", "template", "format", "model", "seed")
# Last components of a foreign key that say which role it plays.
_FOREIGN_LAST = {
    "lr": ("lr", "learning_rate", "peak_lr", "max_lr", "base_lr"),
    "epochs": ("epochs", "num_epochs", "n_epochs", "max_epochs"),
    "template": ("template",),
    "format": ("format", "data_format"),
}


def _last(col: str) -> str:
    return col.rsplit(".", 1)[-1]


def _foreign_role(col: str, role: str) -> bool:
    """Whether a column no schema describes plays ``role``, judged by its name."""
    last, first = _last(col), col.split(".")[0]
    if role == "seed":
        return last.endswith("seed")
    if role == "replay":
        return "replay" in col or (first in ("mix", "mixing") and "ratio" in last)
    if role == "template":
        return last in _FOREIGN_LAST["template"] or (first == "template" and last == "name")
    if role == "model":
        return col == "model"
    if role in _FOREIGN_LAST:
        return last in _FOREIGN_LAST[role]
    return False


def known_roles() -> set[str]:
    return {s.role for s in SETTINGS.settings.values() if s.role} | set(FOREIGN_ROLES)


def has_role(col: str, role: str) -> bool:
    """Whether the column ``col`` plays ``role`` (``lr``, ``replay``, ``seed``, ``method``, ...)."""
    if role not in known_roles():
        raise ValueError(f"unknown axis role {role!r}")
    own = SETTINGS.described(col)
    if own is not None:
        return own.role == role
    return _foreign_role(col, role)


def role_of(col: str) -> str | None:
    """The role ``col`` plays, None when it plays none."""
    own = SETTINGS.described(col)
    if own is not None:
        return own.role
    return next((r for r in FOREIGN_ROLES if _foreign_role(col, r)), None)


def key_of(role: str) -> str:
    """The schema key of the setting that plays ``role`` (the first, in schema order)."""
    keys = SETTINGS.with_role(role)
    if not keys:
        raise ValueError(f"no setting of the schema plays the role {role!r}")
    return keys[0]


def describe(col: str | None) -> Setting | None:
    """The description of a setting column: its own, or for a foreign column playing a role the
    description of the schema setting playing it; None for a column that is neither."""
    if col is None:
        return None
    own = SETTINGS.described(col)
    if own is not None:
        return own
    role = role_of(col)
    return SETTINGS.settings[key_of(role)] if role and SETTINGS.with_role(role) else None


def role_noun(role: str) -> str:
    """How a sentence names the setting playing ``role`` (``number of epochs``)."""
    keys = SETTINGS.with_role(role)
    if not keys:
        return role
    s = SETTINGS.settings[keys[0]]
    return s.noun or s.label or role


def find_axis(columns: Sequence[str], role: str) -> str | None:
    """The first column in ``columns`` that plays ``role``."""
    matches = [c for c in columns if has_role(c, role)]
    if not matches:
        return None
    # Prefer the shortest key (``optim.lr`` over ``optim.sched.peak_lr``).
    return min(matches, key=lambda c: (c.count("."), columns.index(c)))


def _ranked(attr: str, foreign: dict[str, int] | None = None) -> tuple[str, ...]:
    ranked = {k: getattr(s, attr) for k, s in SETTINGS.settings.items() if getattr(s, attr) is not None}
    ranked.update(foreign or {})
    return tuple(sorted(ranked, key=ranked.__getitem__))


def headline_keys() -> tuple[str, ...]:
    """The settings the report names when they did not vary, in the order it names them."""
    return _ranked("headline")


def apart_keys(foreign: dict[str, int] | None = None) -> tuple[str, ...]:
    """The settings whose difference makes two sweeps' numbers incomparable, in order; ``foreign``
    adds columns no schema describes at their places."""
    return _ranked("apart", foreign)


def machine_keys() -> frozenset[str]:
    """Settings that say where or on how many cores a job runs, never an experimental choice."""
    return frozenset(SETTINGS.keys(machine=True))
