"""``sft-sweep-chat``: talk to a job's base and tuned models side by side.

    sft-sweep-chat JOB_DIR                       # interactive (readline history; /reset, /system TEXT, /quit)
    sft-sweep-chat SWEEP_DIR "lr=3e-4 epochs=2"  # a job of a sweep, by name or by some of its key=value parts
    sft-sweep-chat JOB_DIR --prompt "What is the capital of Varnia?" [--prompt "And its river?"] [--json]
    sft-sweep-chat path/to/model.npz --template chatml

Both models get the same prompt rendered with the job's own chat template, and each keeps its own
history of the conversation. Generation is greedy unless ``--temperature`` is above 0 (then
``--top-k`` / ``--top-p`` filter the samples) and stops at the end of the assistant turn. The
repetition controls (``--repetition-penalty``, ``--no-repeat-ngram``) default to those the job's
metrics were measured with (``sft_sweep.decoding``), so the chat shows the answers the metrics judged.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sys
import textwrap
from dataclasses import dataclass, field

import numpy as np

from .data.conversation import Conversation, Turn
from .data.templates import TEMPLATE_NAMES, Template, get_template, render_prompt
from .decoding import add_decoding_args, chosen_decoding, describe
from .errors import SftSweepError
from .jobmodels import JobModels, check_architecture, load_model, resolve
from .nn import GPT, generate
from .jobtokenizer import job_tokenizer

HISTORY_FILE = os.path.expanduser("~/.sft_sweep_chat_history")


class ChatError(SftSweepError):
    pass


@dataclass
class Sampling:
    temperature: float = 0.0  # 0: greedy
    top_k: int = 0
    top_p: float = 1.0
    max_new_tokens: int = 96
    seed: int | None = None
    repetition_penalty: float = 1.0  # 1: off
    no_repeat_ngram: int = 0  # 0: off
    decoding_from: str = "off (the default)"  # where the two controls above come from


def cut_at_new_turn(ids: list[int], tmpl: Template) -> list[int]:
    """The reply up to its end-of-turn id, or up to where the model starts a new turn unasked."""
    end = len(ids)
    for i, t in enumerate(ids):
        if t in tmpl.stop_ids or tmpl.tok.is_special(t):
            end = i
            break
    at = tmpl.new_turn_at(ids[:end])
    return ids[: end if at is None else at]


@dataclass
class ChatSession:
    """Models that answer the same user turns, each with its own history."""

    models: dict[str, GPT]
    template: Template
    system: str | None = None
    sampling: Sampling = field(default_factory=Sampling)
    histories: dict[str, list[Turn]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.sampling.seed)
        self.reset()

    def reset(self) -> None:
        self.histories = {name: [] for name in self.models}

    def _prompt_ids(self, name: str, user: str, block: int) -> list[int]:
        history = list(self.histories[name])
        room = max(1, min(self.sampling.max_new_tokens, block // 4))  # keep space for a reply
        while True:
            turns = ([Turn("system", self.system)] if self.system else []) + history + [Turn("user", user)]
            ids = render_prompt(Conversation(turns), self.template)
            if len(ids) + room <= block or not history:
                break
            history = history[2:]  # forget the oldest exchange
        if len(ids) >= block:
            raise ChatError(f"the prompt is {len(ids)} tokens; the model reads at most {block} "
                            f"(model.block_size): shorten it or the system prompt")
        return ids

    def ask(self, user: str) -> dict[str, str]:
        replies = {}
        for name, model in self.models.items():
            ids = self._prompt_ids(name, user, model.config.block_size)
            s = self.sampling
            # Any special token ends the reply: a model emitting <|im_start|> is opening a new turn.
            halt = set(self.template.stop_ids) | set(self.template.tok.special_tokens.values())
            out = generate(model, [ids], s.max_new_tokens, stop_ids=halt,
                           temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, rng=self.rng,
                           repetition_penalty=s.repetition_penalty, no_repeat_ngram=s.no_repeat_ngram)[0]
            text = self.template.tok.decode(cut_at_new_turn(out, self.template), skip_special=True).strip()
            self.histories[name] += [Turn("user", user), Turn("assistant", text or " ")]
            replies[name] = text
        return replies


def side_by_side(replies: dict[str, str], width: int) -> str:
    names = list(replies)
    if len(names) == 1 or width < 60:
        return "\n".join(f"{n}: {replies[n]}" for n in names)
    col = (width - 3) // len(names)
    wrapped = [[n + ":"] + (textwrap.wrap(replies[n], col) or ["(nothing)"]) for n in names]
    rows = itertools.zip_longest(*wrapped, fillvalue="")
    return "\n".join(" | ".join(cell.ljust(col) for cell in row).rstrip() for row in rows)


def load_session(found: JobModels, args: argparse.Namespace) -> tuple[ChatSession, list[str]]:
    notes = list(found.notes)
    models: dict[str, GPT] = {}
    if found.base is not None and args.only != "tuned":
        models["base"] = load_model(found.base)
        if found.job_dir is not None:
            check_architecture(found.base, models["base"], found.config, "base model")
    if found.tuned is not None and args.only != "base":
        tuned = load_model(found.tuned)
        if found.job_dir is not None:
            check_architecture(found.tuned, tuned, found.config)
        models["tuned" if found.job_dir is not None else found.tuned.name] = tuned
    if not models:
        raise ChatError("no model to talk to: " + "; ".join(notes))
    template = args.template or found.template
    decoding, source = chosen_decoding(args, found.job_dir, found.config)
    sampling = Sampling(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                        max_new_tokens=args.max_new_tokens, seed=args.seed, **decoding, decoding_from=source)
    tok = job_tokenizer(found.config, found.job_dir)
    for name, model in models.items():
        if model.config.vocab_size != tok.vocab_size:
            raise ChatError(f"the {name} model has {model.config.vocab_size} token ids, but the job's tokenizer "
                            f"({tok.name}) has {tok.vocab_size}")
    return ChatSession(models, get_template(template, tok), system=args.system, sampling=sampling), notes


def interactive(session: ChatSession, header: str) -> None:
    try:
        import readline

        try:
            readline.read_history_file(HISTORY_FILE)
        except OSError:
            pass
    except ImportError:  # not on every platform; input() still works
        readline = None  # type: ignore[assignment]
    print(header)
    print("type a message; /reset forgets the conversation, /system TEXT sets the system prompt, /quit ends")
    width = shutil.get_terminal_size((100, 20)).columns
    try:
        while True:
            try:
                line = input("you> ").strip()
            except EOFError:
                print()
                break
            if not line:
                continue
            if line in ("/quit", "/exit"):
                break
            if line == "/reset":
                session.reset()
                print("(conversation forgotten)")
                continue
            if line.startswith("/system"):
                session.system = line[len("/system"):].strip() or None
                session.reset()
                print(f"(system prompt: {session.system!r}; conversation forgotten)")
                continue
            try:
                print(side_by_side(session.ask(line), width))
            except ChatError as e:
                print(f"sft-sweep-chat: {e}")
    except KeyboardInterrupt:
        print()
    finally:
        if readline is not None:
            try:
                readline.write_history_file(HISTORY_FILE)
            except OSError:
                pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="sft-sweep-chat", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n" + "\n".join(__doc__.split("\n\n")[1].splitlines()))
    p.add_argument("target", help="a job directory, a sweep directory (then JOB), or a model .npz")
    p.add_argument("job", nargs="?", help="in a sweep directory: the job's name, or some of its key=value parts")
    p.add_argument("--base", help="the base model's .npz (default: found by the job's cache key)")
    p.add_argument("--only", choices=("base", "tuned"), help="talk to one model only")
    p.add_argument("--template", choices=TEMPLATE_NAMES, help="chat template (default: the job's own)")
    p.add_argument("--system", help="system prompt")
    p.add_argument("--prompt", action="append", help="one-shot: a user turn (repeat for a multi-turn conversation)")
    p.add_argument("--json", action="store_true", help="one-shot: print the replies as JSON")
    p.add_argument("--temperature", type=float, default=0.0, help="0 (default): greedy; above 0: sample")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest tokens (0: all)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1: off)")
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--seed", type=int, help="random seed for sampling")
    add_decoding_args(p)
    args = p.parse_args(argv)
    if args.json and not args.prompt:
        p.error("--json needs --prompt")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        found = resolve(args.target, args.job, args.base)
        session, notes = load_session(found, args)
        if args.prompt:
            turns = []
            for prompt in args.prompt:
                turns.append({"prompt": prompt, **session.ask(prompt)})
            if args.json:
                print(json.dumps({"job": str(found.job_dir) if found.job_dir else None,
                                  "models": {n: str(p) for n, p in (("base", found.base), ("tuned", found.tuned)) if p},
                                  "template": session.template.name, "system": session.system,
                                  "sampling": session.sampling.__dict__, "notes": notes, "turns": turns}, indent=2))
                return
            for note in notes:
                print(f"note: {note}", file=sys.stderr)
            s = session.sampling
            print(f"decoding: {describe(s.__dict__)} (from {s.decoding_from})", file=sys.stderr)
            width = shutil.get_terminal_size((100, 20)).columns
            for t in turns:
                print(f"you> {t['prompt']}")
                print(side_by_side({n: t[n] for n in session.models}, width))
            return
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        where = found.job_dir or found.tuned
        s = session.sampling
        interactive(session, f"{where}: {', '.join(session.models)} with the {session.template.name} template; "
                             f"decoding: {describe(s.__dict__)} (from {s.decoding_from})")
    except (SftSweepError, ValueError) as e:
        print(f"sft-sweep-chat: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
