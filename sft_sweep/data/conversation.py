"""The conversation model: an ordered list of turns, each a role and a text.

Every data format is parsed into :class:`Conversation`, and every chat template renders
from it, so any format works with any template.

Rules checked on construction (``ConversationError``, a ``ValueError``, names the turn):

- roles are ``system``, ``user``, ``assistant`` or ``tool``; contents are strings;
- at most one ``system`` turn, and only as the first turn;
- at least one non-system turn, and the first non-system turn is ``user``;
- a ``tool`` turn (a tool's result) follows an ``assistant`` turn (the call) or another
  ``tool`` turn;
- two ``user`` turns are never adjacent (a second question must come after an answer).

Two ``assistant`` turns may be adjacent (a function call followed by the answer is common
in tool-use data). A conversation may end with any role: an evaluation prompt ends with
the ``user`` turn that the model is to answer (training data must end with the answer: the
file loaders check that).

``Turn.trained`` is an explicit per-turn training choice (a data file's ``loss_weight`` 0 or
1); ``None`` leaves it to the template's mask mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")


class ConversationError(ValueError):
    """A conversation breaks a structural rule. ``turn`` is the index of the offending turn."""

    def __init__(self, message: str, turn: int | None = None, part: str = "role") -> None:
        super().__init__(message)
        self.turn = turn
        self.part = part  # "role" or "content": which attribute of the turn is wrong


# Slots: a data file becomes one Turn per message and one Conversation per record, held for the
# whole job, so their per-object overhead is a multiple of the file's size without them.
@dataclass(frozen=True, slots=True)
class Turn:
    role: str
    content: str
    trained: bool | None = None  # None: the mask mode decides; True / False: this turn's choice


@dataclass(slots=True)
class Conversation:
    turns: list[Turn]
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.turns = list(self.turns)
        validate_turns(self.turns)

    @property
    def system(self) -> str | None:
        """The system prompt, or None."""
        if self.turns and self.turns[0].role == "system":
            return self.turns[0].content
        return None

    @property
    def messages(self) -> list[Turn]:
        """The turns without the system turn."""
        return self.turns[1:] if self.system is not None else list(self.turns)

    def key(self) -> tuple[tuple[str, str], ...]:
        """Exact identity of the conversation's text (used for deduplication)."""
        return tuple((t.role, t.content) if t.trained is None else (t.role, t.content, t.trained)
                     for t in self.turns)

    def text(self) -> str:
        """All contents joined by newlines (for searching, not for training)."""
        return "\n".join(t.content for t in self.turns)

    @classmethod
    def simple(cls, user: str, assistant: str | None = None, system: str | None = None,
               meta: dict | None = None) -> "Conversation":
        """A one-exchange conversation (assistant omitted: a prompt)."""
        turns = []
        if system is not None:
            turns.append(Turn("system", system))
        turns.append(Turn("user", user))
        if assistant is not None:
            turns.append(Turn("assistant", assistant))
        return cls(turns, dict(meta or {}))

    def to_dict(self) -> dict:
        """``{"messages": [{"role", "content"}, ...]}``: the OpenAI messages shape."""
        return {"messages": [{"role": t.role, "content": t.content}
                             | ({} if t.trained is None else {"loss_weight": int(t.trained)})
                             for t in self.turns]}


def validate_turns(turns: list[Turn]) -> None:
    if not turns:
        raise ConversationError("conversation has no turns", None, "role")
    prev: str | None = None
    seen_non_system = False
    for i, t in enumerate(turns):
        if not isinstance(t, Turn):
            raise ConversationError(f"turn {i} is a {type(t).__name__}, not a Turn", i, "role")
        if t.role not in ROLES:
            raise ConversationError(
                f"unknown role {t.role!r} (roles: {', '.join(ROLES)})", i, "role")
        if not isinstance(t.content, str):
            raise ConversationError(
                f"content must be a string, got {type(t.content).__name__}", i, "content")
        if t.trained is not None and not isinstance(t.trained, bool):
            raise ConversationError(
                f"trained must be True, False or None, got {t.trained!r}", i, "content")
        if t.role == "system":
            if i != 0:
                raise ConversationError("a system turn may only be the first turn", i, "role")
        elif not seen_non_system:
            seen_non_system = True
            if t.role != "user":
                raise ConversationError(
                    f"the first non-system turn must be 'user', got {t.role!r}", i, "role")
        if t.role == "tool" and prev not in ("assistant", "tool"):
            raise ConversationError(
                f"a tool turn must follow an assistant (or tool) turn, not {prev!r}", i, "role")
        if t.role == "user" and prev == "user":
            raise ConversationError("two user turns in a row", i, "role")
        prev = t.role
    if not seen_non_system:
        raise ConversationError("conversation has only a system turn", 0, "role")
