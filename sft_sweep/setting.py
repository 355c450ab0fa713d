"""How a setting of the config schema is described, once, beside its field.

A field of the schema (``sft_sweep.config``) carries a ``Setting`` in its metadata: how reports
name it and print its values, whether it is plotted on a log axis, the value that means "off"
(a setting added later counts in a config's hash only when it differs from that value, so earlier
jobs keep their hashes), the setting it depends on, and what it keys: the job only, the base
model's weights, or the base model's evaluation. A group (a field holding a dataclass) carries
one too; what it says about hashing and base keys holds for every setting below it unless that
setting says otherwise.

The hashing rules, the base-model cache key and every report (labels, colours, the part a setting
plays in figures and findings) read these descriptions through ``SettingIndex``.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: ``Setting.off`` of a setting that has no "off" value: every value counts.
ALWAYS = type("Always", (), {"__repr__": lambda self: "ALWAYS"})()

#: How values print in reports: as given, short scientific (``3e-4``), percent of 1 (``50%``).
SHOW = ("plain", "sci", "percent", "list")
#: Flags a group hands down to the settings below it (None: as the group says).
_INHERITED = ("hashed", "machine", "base", "base_eval")


@dataclass(frozen=True)
class Setting:
    """The description of one setting (or of a group of settings)."""

    #: How a report names it (``learning rate``); None: its dotted key.
    label: str | None = None
    #: How a sentence names what a sweep did not vary (``number of epochs``); None: the label.
    noun: str | None = None
    #: Before a value in legends and setting lists (``lr 3e-4``); None: the key's last part.
    short: str | None = None
    #: The part it plays in figures and findings (``lr``, ``replay``, ``method``, ...).
    role: str | None = None
    #: How its values print: one of ``SHOW``.
    show: str = "plain"
    #: Numeric values spread over orders of magnitude: a log axis.
    log: bool = False
    #: A colour map for its values: ``(name, low, high)`` for numbers, a name for text values.
    colors: tuple[str, float, float] | str | None = None
    #: The value that counts as absent from every hash (``ALWAYS``: no such value).
    off: Any = ALWAYS
    #: ``(sibling field, value)``: the setting means something (and is hashed) only then.
    only_when: tuple[str, Any] | None = None
    #: False: it changes where, how fast or how verbosely a job runs, never what it computes.
    hashed: bool | None = None
    #: True: where or on how many cores a job runs; never an experimental choice of a sweep.
    machine: bool | None = None
    #: True: it changes the base model's weights (part of the base model's cache key).
    base: bool | None = None
    #: True: it changes what the base model's evaluation measures (its cached evaluation's key).
    base_eval: bool | None = None
    #: Its place in the report's line of main settings held fixed (None: not in that line).
    headline: int | None = None
    #: Its place among the settings that make two sweeps' numbers incomparable (None: not one).
    apart: int | None = None
    #: Descriptions of the fields of a group whose dataclass lives below the schema (data/, nn/).
    fields: Mapping[str, Setting] = field(default_factory=dict)
    #: A dict of named entries, each this dataclass (``data.datasets.NAME``).
    entries: type | None = None

    def __post_init__(self) -> None:
        if self.show not in SHOW:
            raise ValueError(f"Setting.show must be one of {SHOW}, got {self.show!r}")

    def below(self, parent: Setting) -> Setting:
        """This description with the flags it leaves unsaid taken from its group."""
        inherited = {k: getattr(parent, k) for k in _INHERITED if getattr(self, k) is None}
        return dataclasses.replace(self, **inherited) if inherited else self

    @property
    def is_off_value(self) -> bool:
        return self.off is not ALWAYS


def setting(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING,
            **description: Any) -> Any:
    """A dataclass field with its default (or default factory) and its description."""
    meta = {"setting": Setting(**description)}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def group(cls: type, **description: Any) -> Any:
    """A field holding the dataclass ``cls`` (a config group), described as a whole."""
    return field(default_factory=cls, metadata={"setting": Setting(**description)})


def _described(f: dataclasses.Field) -> Setting:
    return f.metadata.get("setting", Setting())


def _dataclass_of(hint: Any) -> type | None:
    """The dataclass a field's type names (``Optional[X]`` included), or None."""
    if dataclasses.is_dataclass(hint):
        return hint
    for arg in typing.get_args(hint):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


class SettingIndex:
    """Every described key of a schema: ``data.datasets.*.format`` stands for each dataset's."""

    WILDCARD = "*"

    def __init__(self, schema: type, root: Setting | None = None) -> None:
        self.settings: dict[str, Setting] = {}
        self.groups: dict[str, Setting] = {}
        self._entries: set[str] = set()
        self._walk(schema, "", root or Setting(hashed=True, machine=False, base=False, base_eval=False), {})

    def _walk(self, cls: type, prefix: str, parent: Setting, extra: Mapping[str, Setting]) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            key = f"{prefix}{f.name}"
            own = extra.get(f.name) or _described(f)
            desc = own.below(parent)
            inner = _dataclass_of(hints.get(f.name))
            if inner is not None:
                self.groups[key] = desc
                self._walk(inner, f"{key}.", desc, desc.fields)
            elif desc.entries is not None:
                self.groups[key] = desc
                self._entries.add(key)
                self._walk(desc.entries, f"{key}.{self.WILDCARD}.", desc, {})
            else:
                self.settings[key] = desc

    def pattern(self, key: str) -> str:
        """``key`` with each entry name (``data.datasets.main``) as the wildcard."""
        parts = key.split(".")
        for i in range(1, len(parts)):
            if ".".join(parts[:i]) in self._entries:
                parts[i] = self.WILDCARD
        return ".".join(parts)

    def described(self, key: str) -> Setting | None:
        """The description of the setting ``key`` names, None when the schema has no such setting."""
        return self.settings.get(self.pattern(key))

    def rules(self, key: str) -> Setting:
        """How ``key`` is hashed and keyed: its own description, or for a key the schema does not
        describe (``mix.weights.NAME``, an unknown key) what its nearest described group says."""
        pat = self.pattern(key)
        if pat in self.settings:
            return self.settings[pat]
        while pat:
            pat = pat.rpartition(".")[0]
            if pat in self.groups:
                g = self.groups[pat]
                return Setting(**{k: getattr(g, k) for k in _INHERITED})
            if pat in self.settings:
                s = self.settings[pat]
                return Setting(**{k: getattr(s, k) for k in _INHERITED})
        return Setting(hashed=True, machine=False, base=False, base_eval=False)

    def keys(self, **want: Any) -> list[str]:
        """Described keys (schema order) whose description has every attribute of ``want``."""
        return [k for k, s in self.settings.items() if all(getattr(s, a) == v for a, v in want.items())]

    def with_role(self, role: str) -> list[str]:
        return [k for k, s in self.settings.items() if s.role == role]
