"""Conversations written back as data files: the inverse of :mod:`.formats`' parsers, for
exporting a built-in or filtered set in the layout another tool reads."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..atomicio import write_atomic
from ..errors import ConfigError
from .conversation import Conversation
from .formats import FORMATS

SHAREGPT_NAMES: dict[str, str] = {"system": "system", "user": "human", "assistant": "gpt",
                                  "tool": "observation"}


def conversation_to_record(conv: Conversation, format: str) -> dict:
    """One conversation as a record of ``format`` (the inverse of parsing).

    ``alpaca`` needs the shape system? (user, assistant)+ without tool turns; ``sharegpt``
    writes tool turns as ``observation`` (read them back with ``role_map={"observation":
    "tool"}``). Per-turn loss weights are written as ``loss_weight`` in ``messages`` and
    ``sharegpt``; ``alpaca`` and ``chatml`` cannot hold them, so a weighted conversation is
    refused there rather than written without its weights.
    """
    if format == "messages":
        return {**{k: v for k, v in conv.meta.items() if k not in ("input", "input_turn")},
                **conv.to_dict()}
    if format in ("alpaca", "chatml") and any(t.trained is not None for t in conv.turns):
        raise ConfigError(f"the {format} format cannot hold per-turn loss weights; save this "
                          "conversation as messages or sharegpt")
    if format == "sharegpt":
        rec = {"conversations": [{"from": SHAREGPT_NAMES[t.role], "value": t.content}
                                 | ({} if t.trained is None else {"loss_weight": int(t.trained)})
                                 for t in conv.turns]}
        rec.update({k: v for k, v in conv.meta.items() if k not in ("input", "input_turn")})
        return rec
    if format == "chatml":
        return {"text": "\n".join(f"<|im_start|>{t.role}\n{t.content}<|im_end|>" for t in conv.turns)}
    if format == "alpaca":
        msgs = conv.messages
        roles = [t.role for t in msgs]
        if len(msgs) % 2 or roles != ["user", "assistant"] * (len(msgs) // 2):
            raise ConfigError("an Alpaca record holds a system prompt and user/assistant pairs; "
                              f"this conversation has roles {roles}")
        rec: dict = {}
        if conv.system is not None:
            rec["system"] = conv.system
        if len(msgs) > 2:
            rec["history"] = [[msgs[i].content, msgs[i + 1].content] for i in range(0, len(msgs) - 2, 2)]
        user = msgs[-2].content
        inp = conv.meta.get("input")
        if inp and user.endswith("\n\n" + inp):
            rec["instruction"], rec["input"] = user[: -len(inp) - 2], inp
        else:
            rec["instruction"], rec["input"] = user, ""
        rec["output"] = msgs[-1].content
        return rec
    raise ConfigError(f"unknown data format {format!r}; choose one of {', '.join(FORMATS)}")


def save_conversations(conversations: list[Conversation], path: str | os.PathLike,
                       format: str) -> None:
    """Write conversations as ``.json`` (an array) or ``.jsonl``, in ``format``."""
    path = Path(path)
    recs = [conversation_to_record(c, format) for c in conversations]
    if path.suffix.lower() == ".jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs)
    elif path.suffix.lower() == ".json":
        text = json.dumps(recs, ensure_ascii=False, indent=1) + "\n"
    else:
        raise ConfigError(f"unsupported file extension {path.suffix!r}; use .json or .jsonl")
    write_atomic(path, text)
