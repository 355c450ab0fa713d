"""Chat templates: a conversation -> token ids + a loss mask.

A template is built from segments, each a run of ids with a "trained" flag, so the loss
mask comes from the structure of the conversation, never from searching the text for
markers. A user who types ``<|im_end|>`` or ``### Response:`` gets plain bytes that
neither end the turn nor enter the loss.

Mask convention: ``loss_mask[i] == 1`` iff ``ids[i]`` is a trained prediction target,
predicted from ``ids[:i]``. ``loss_mask[0]`` is always 0 (nothing predicts the first id).
Mask modes:

- ``"assistant"``: the content of every assistant turn plus the id that ends it;
- ``"last"``: the same, for the final assistant turn only;
- ``"all"``: every id (but the first).

A turn with an explicit choice (``Turn.trained``, from a file's per-message ``loss_weight``)
overrides the mode ``"assistant"`` or ``"last"`` for its own text: ``False`` leaves an
assistant turn's content and end id untrained, ``True`` trains it (and, for a system, user or
tool turn, trains that turn's content; its framing stays untrained). ``"all"`` trains every id
whatever the weights.

A template encodes with its tokenizer (``Template.tok``: the byte tokenizer unless
``get_template(name, tok)`` is given another), one segment at a time: a token never spans two
segments, so the mask is exact at every boundary whatever the tokenizer merges, and the ids
of a prompt (``render_prompt``) are the start of the ids the model trained on.

Templates (``{...}`` is text encoded with the tokenizer; ``<|x|>`` is a special id; ``+`` marks what
is trained in mode ``"assistant"``):

``chatml``, per turn ``<|im_start|>{role}\\n{content}<|im_end|>\\n``::

    <|im_start|>system\\n{system}<|im_end|>\\n
    <|im_start|>user\\n{user}<|im_end|>\\n
    <|im_start|>assistant\\n+{assistant}<|im_end|>+\\n
    <|im_start|>tool\\n{tool}<|im_end|>\\n

  The ``\\n`` after an assistant's ``<|im_end|>`` is untrained (it is part of the next
  turn's framing) and is omitted after the last turn of a sequence. Generation stops at
  ``<|im_end|>``.

``alpaca``, blocks separated by a blank line::

    {system}\\n\\n                                    (a preamble, only when there is one)
    ### Instruction:\\n{user}\\n\\n
    ### Instruction:\\n{instruction}\\n\\n### Input:\\n{input}\\n\\n   (Alpaca records with an input)
    ### Response:\\n+{assistant}<|endoftext|>+\\n\\n
    ### Tool:\\n{tool}\\n\\n

  Multi-turn conversations repeat Instruction / Response blocks. The ``\\n\\n`` after an
  assistant's ``<|endoftext|>`` is untrained and omitted at the end of a sequence.
  ``### Input:`` appears only for conversations loaded from Alpaca records with a non-empty
  ``input`` (other templates show the joined text ``instruction\\n\\ninput``).

``plain`` (minimal role markers, as plain text), one line per turn::

    System: {system}\\n
    Instruction: {user}\\n
    Response: +{assistant}<|endoftext|>+\\n
    Tool: {tool}\\n
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..tokenizer import ByteTokenizer
from .conversation import Conversation

TOK = ByteTokenizer()  # the default tokenizer of a template
TEMPLATE_NAMES: tuple[str, ...] = ("chatml", "alpaca", "plain")
MASK_MODES: tuple[str, ...] = ("assistant", "last", "all")

# A segment: (ids, kind) where kind is "frame" (untrained), "content" (untrained text of a
# non-assistant turn) or "answer" (assistant content + end id: trained), plus the index of
# the turn it belongs to.
Segment = tuple[list[int], str, int]


@dataclass
class Template:
    """A chat template. Subclasses define how each turn is framed."""

    name: str
    stop_ids: tuple[int, ...]
    new_turn_markers: list[list[int]] = field(default_factory=list)
    tok: Any = field(default=TOK, repr=False, compare=False)

    def _b(self, text: str) -> list[int]:
        return self.tok.encode(text)

    def new_turn_at(self, ids: list[int]) -> int | None:
        """Where ``ids`` (generated text) start a turn the model was not asked for: the index of
        the first marker id (a one-id marker, e.g. ``<|im_start|>``), or of the token holding the
        first byte of a text marker (``### Instruction:``), whatever tokens spell it; None if
        nowhere."""
        at = None
        for marker in self.new_turn_markers:
            if len(marker) == 1 and self.tok.is_special(marker[0]):
                hit = next((i for i, t in enumerate(ids) if t == marker[0]), None)
                if hit is not None and (at is None or hit < at):
                    at = hit
        texts = [self.tok.decode(m) for m in self.new_turn_markers
                 if not (len(m) == 1 and self.tok.is_special(m[0]))]
        if texts:
            limit = len(ids) if at is None else at
            ends, joined = [], bytearray()
            for t in ids[:limit]:
                if not self.tok.is_special(t):
                    joined += self.tok.token_bytes[int(t)]
                ends.append(len(joined))
            found = [f for f in (joined.find(m.encode("utf-8")) for m in texts) if f >= 0]
            if found:
                first = min(found)
                at = next(i for i, e in enumerate(ends) if e > first)
        return at

    # --- to override -------------------------------------------------------------------
    def turn_prefix(self, conv: Conversation, index: int) -> list[Segment]:
        raise NotImplementedError

    def assistant_header(self) -> list[int]:
        raise NotImplementedError

    def separator(self) -> list[int]:
        """Untrained ids after an assistant turn's end id when another turn follows."""
        raise NotImplementedError

    # --- shared ------------------------------------------------------------------------
    @property
    def end_id(self) -> int:
        """The id that ends an assistant turn (trained)."""
        return self.stop_ids[0]

    def segments(self, conv: Conversation) -> list[Segment]:
        segs: list[Segment] = []
        n = len(conv.turns)
        for i, turn in enumerate(conv.turns):
            if turn.role == "assistant":
                segs.append((self.assistant_header(), "frame", i))
                segs.append((self._b(turn.content) + [self.end_id], "answer", i))
                if i + 1 < n:
                    segs.append((self.separator(), "frame", i))
            else:
                segs.extend(self.turn_prefix(conv, i))
        return segs

    def __repr__(self) -> str:
        return f"Template({self.name!r})"


class ChatMLTemplate(Template):
    def __init__(self, tok: Any = TOK) -> None:
        super().__init__("chatml", (tok.im_end_id,), [[tok.im_start_id]], tok)

    def turn_prefix(self, conv, index):
        t, tok = conv.turns[index], self.tok
        return [([tok.im_start_id] + self._b(t.role + "\n"), "frame", index),
                (self._b(t.content), "content", index),
                ([tok.im_end_id] + self._b("\n"), "frame", index)]

    def assistant_header(self):
        return [self.tok.im_start_id] + self._b("assistant\n")

    def separator(self):
        return self._b("\n")


class AlpacaTemplate(Template):
    def __init__(self, tok: Any = TOK) -> None:
        super().__init__("alpaca", (tok.eot_id,),
                         [tok.encode("### Instruction:"), tok.encode("### Response:")], tok)

    def turn_prefix(self, conv, index):
        t = conv.turns[index]
        if t.role == "system":
            return [(self._b(t.content), "content", index), (self._b("\n\n"), "frame", index)]
        if t.role == "tool":
            return [(self._b("### Tool:\n"), "frame", index), (self._b(t.content), "content", index),
                    (self._b("\n\n"), "frame", index)]
        # user
        inp = conv.meta.get("input")
        if (inp and conv.meta.get("input_turn") == index
                and t.content.endswith("\n\n" + inp)):
            instr = t.content[: len(t.content) - len(inp) - 2]
            return [(self._b("### Instruction:\n"), "frame", index), (self._b(instr), "content", index),
                    (self._b("\n\n### Input:\n"), "frame", index), (self._b(inp), "content", index),
                    (self._b("\n\n"), "frame", index)]
        return [(self._b("### Instruction:\n"), "frame", index), (self._b(t.content), "content", index),
                (self._b("\n\n"), "frame", index)]

    def assistant_header(self):
        return self._b("### Response:\n")

    def separator(self):
        return self._b("\n\n")


class PlainTemplate(Template):
    LABELS = {"system": "System: ", "user": "Instruction: ", "tool": "Tool: "}

    def __init__(self, tok: Any = TOK) -> None:
        super().__init__("plain", (tok.eot_id,), [tok.encode("Instruction:"), tok.encode("Response:")], tok)

    def turn_prefix(self, conv, index):
        t = conv.turns[index]
        return [(self._b(self.LABELS[t.role]), "frame", index), (self._b(t.content), "content", index),
                (self._b("\n"), "frame", index)]

    def assistant_header(self):
        return self._b("Response: ")

    def separator(self):
        return self._b("\n")


_TEMPLATES = {"chatml": ChatMLTemplate, "alpaca": AlpacaTemplate, "plain": PlainTemplate}


def get_template(name: str | Template, tok: Any = None) -> Template:
    """A template by name (``"chatml"``, ``"alpaca"``, ``"plain"``) encoding with ``tok`` (the
    byte tokenizer when None); a Template passes through."""
    if isinstance(name, Template):
        return name
    try:
        cls = _TEMPLATES[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown chat template {name!r}; choose one of {', '.join(TEMPLATE_NAMES)}") from None
    return cls(TOK if tok is None else tok)


def render(conversation: Conversation, template: str | Template = "chatml",
           mask: str = "assistant") -> tuple[list[int], list[int]]:
    """Token ids and the aligned loss mask of a conversation (see the module docstring)."""
    tmpl = get_template(template)
    if mask not in MASK_MODES:
        raise ConfigError(f"unknown mask mode {mask!r}; choose one of {', '.join(MASK_MODES)}")
    segs = tmpl.segments(conversation)
    last_assistant = max((i for i, t in enumerate(conversation.turns) if t.role == "assistant"),
                         default=-1)
    ids: list[int] = []
    loss: list[int] = []
    for seg_ids, kind, turn in segs:
        chosen = conversation.turns[turn].trained
        if mask == "all":
            on = 1
        elif kind == "frame":
            on = 0
        elif chosen is not None:  # the data file's own per-turn choice
            on = int(chosen)
        elif kind != "answer":
            on = 0
        elif mask == "assistant":
            on = 1
        else:  # last
            on = int(turn == last_assistant)
        ids.extend(seg_ids)
        loss.extend([on] * len(seg_ids))
    if loss:
        loss[0] = 0
    return ids, loss


def render_prompt(conversation: Conversation, template: str | Template = "chatml") -> list[int]:
    """The ids to generate from: every turn before the final assistant turn (a trailing
    assistant turn is dropped), then the assistant header."""
    tmpl = get_template(template)
    turns = conversation.turns
    if turns[-1].role == "assistant":
        conv = Conversation(turns[:-1], conversation.meta) if len(turns) > 1 else None
    else:
        conv = conversation
    ids: list[int] = []
    if conv is not None:
        for seg_ids, _kind, _turn in tmpl.segments(conv):
            ids.extend(seg_ids)
        if conv.turns[-1].role == "assistant":  # e.g. two assistant turns in a row
            ids.extend(tmpl.separator())
    ids.extend(tmpl.assistant_header())
    return ids
