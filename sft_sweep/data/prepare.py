"""From the data config to everything a job trains and evaluates on.

Two sources:
- ``world``: the built-in synthetic world (pre-training prose, instruction set, held-out splits,
  answer items with references, knowledge probe).
- ``files``: instruction files (Alpaca / ShareGPT / messages / ChatML) with a held-out share for
  evaluation, and pre-training text from ``data.pretrain_text`` (or the world's prose when unset).
  Answer accuracy and the knowledge probe need reference answers, which plain files do not carry:
  those metrics are then absent from the job's files, not zero.

Nothing is dropped silently: every skipped record, duplicate, filtered or length-dropped
conversation is counted in ``PreparedData.report``, and what a user should know (records
skipped, examples dropped for length, a metric that cannot be measured) is in
``PreparedData.warnings``. Exact duplicates are removed before the validation split, so a
conversation never sits on both sides of it.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, DataError
from ..tokenizer import ByteTokenizer
from .conversation import Conversation
from .evalitem import EvalItem
from .examples import Example, fit_length
from .fit import data_fit, fit_warnings, split_last_answer
from .formats import load_conversations, load_raw_text
from .json_records import ReadProgress
from .mixing import mix_datasets
from .quality import dedup_conversations, filter_quality
from .subset import nested_subset
from .templates import get_template, render
from .tokenizing import build_tokenizer
from .world import FactCompletion, WorldConfig, build_world

if TYPE_CHECKING:  # the schema imports this package (its data sections); a job's Config is passed in
    from ..config import Config


@dataclass
class PreparedData:
    template: Any  # encodes with the job's tokenizer: ``template.tok``
    pretrain_tokens: np.ndarray  # documents joined by end-of-text: pre-training and replay windows
    heldout_tokens: np.ndarray  # held-out raw text: the forgetting metric
    train_examples: list[Example]  # instruction examples (replay is mixed in per job: with_replay)
    val_examples: list[Example]  # held-out conversations: response loss
    eval_items: list[EvalItem]  # answer accuracy (empty when the data has no references)
    probe_items: list[EvalItem]  # knowledge probe (empty when the data has no probe)
    follow_prompts: list[Conversation]  # prompts for the follow-rate check
    report: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # data dropped or metrics lost: shown to the user
    # every asked fact in pre-training phrasing (base-knowledge completion); empty for files
    fact_completions: list[FactCompletion] = field(default_factory=list)
    # dataset name -> its conversations in file order, as loaded (before dedup and the held-out
    # split); the world's training set for source=world. What inspect and the report show.
    conversations: dict[str, list[Conversation]] = field(default_factory=dict)


def join_docs(docs: list[str], tok: Any) -> np.ndarray:
    """The documents as one stream of ids, each followed by ``<|endoftext|>``."""
    encoded = tok.encode_batch(docs) if hasattr(tok, "encode_batch") else (tok.encode(d) for d in docs)
    ids: list[int] = []
    for d in encoded:
        ids.extend(d)
        ids.append(tok.eot_id)
    return np.asarray(ids, dtype=np.int32)


def tokenizer_for(cfg: Config, base_dir: str | None = None, docs: list[str] | None = None) -> Any:
    """The tokenizer of a job's config (``tokenizer=bytes|bpe``): for ``bpe`` the one trained on
    the job's pre-training documents (``docs``, read from the config when not given), cached."""
    if getattr(getattr(cfg, "tokenizer", None), "name", "bytes") != "bytes" and docs is None:
        docs = raw_text(cfg, base_dir)[0]
    return build_tokenizer(cfg, base_dir, docs or [])


def world_config(cfg: Config) -> WorldConfig:
    """The synthetic world's settings, checked (a value out of range is a ConfigError)."""
    w = cfg.data.world
    if not isinstance(w, WorldConfig):  # a plain mapping (configs composed without the schema)
        w = WorldConfig(**dict(w))
    try:
        w.validate()
    except ConfigError as e:
        raise ConfigError(f"data.{e}") from None
    return w


def resolve_path(path: str, base_dir: str | None) -> str:
    """A data path of the config: ``~`` expanded, relative ones taken from ``base_dir``."""
    p = Path(path).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    return str(p)


def pretrain_paths(cfg: Config, base_dir: str | None = None) -> list[tuple[str, str]]:
    """The pre-training text files of a ``files`` config as (config key, resolved path): the key
    is ``data.pretrain_text`` for one file, ``data.pretrain_text[i]`` for each of a list."""
    given = cfg.data.pretrain_text if cfg.data.source == "files" else None
    if not given:
        return []
    if isinstance(given, str):
        return [("data.pretrain_text", resolve_path(given, base_dir))]
    return [(f"data.pretrain_text[{i}]", resolve_path(p, base_dir)) for i, p in enumerate(given)]


def pretrain_source(cfg: Config, base_dir: str | None = None, tokens: np.ndarray | None = None) -> dict:
    """What pre-training reads, as part of the base model's cache key: the digest of the
    pre-training token stream itself (``tokens``, as ``prepare`` built it; built here when not
    given). So settings that change only the SFT data (``data.world.n_train``, task weights that
    add no prose, ...) reuse the same base model, and any change to the pre-training text (of any
    of its files) does not."""
    files = pretrain_paths(cfg, base_dir)
    if tokens is None:
        for key, path in files:
            if not Path(path).is_file():
                raise DataError(f"pre-training text file not found ({key})", path=path)
        docs = raw_text(cfg, base_dir)[0]
        tokens = join_docs(docs, tokenizer_for(cfg, base_dir, docs))
    kind = "file" if files else "world"
    digest = hashlib.sha256(np.ascontiguousarray(tokens, dtype=np.int32).tobytes()).hexdigest()[:16]
    out = {"kind": kind, "tokens_sha256": digest, "n_tokens": int(len(tokens))}
    if len(files) > 1:  # one file's key stays as it was, so its cached base model is found again
        out["files"] = len(files)
    tok = tokenizer_for(cfg, base_dir) if getattr(cfg, "tokenizer", None) and cfg.tokenizer.name != "bytes" else None
    if tok is not None:  # bytes: absent, so every earlier base keeps its key
        out["tokenizer"] = {"name": tok.name, "vocab_size": tok.vocab_size, "merges_sha256": tok.digest}
    return out


def _read_text_files(cfg: Config, files: list[tuple[str, str]]) -> tuple[list[str], dict]:
    """The documents of every pre-training file, in the order given, each file read with the
    raw-text reader (its errors name the file); the counts per file for the report."""
    docs: list[str] = []
    per_file: list[dict] = []
    for key, path in files:
        counted: dict = {}
        try:
            got = load_raw_text(path, report=counted, max_file_mb=cfg.data.max_file_mb)
        except DataError as e:
            if len(files) == 1:
                raise
            raise DataError(f"{key}: {e}") from None  # which of the list (the message names the file)
        docs += got
        per_file.append({"path": path, "documents": len(got), "split": counted["split"]})
    if len(files) == 1:
        return docs, {"documents": len(docs), "split": per_file[0]["split"]}
    return docs, {"documents": len(docs), "split": "per file (see files)", "files": per_file}


def raw_text(cfg: Config, base_dir: str | None = None,
             report: dict | None = None) -> tuple[list[str], list[str]]:
    """(pre-training docs, held-out docs). One in ten documents (at least one) is held out for the
    forgetting metric, drawn from the documents of all files together; ``report["pretrain_text"]``
    (for files) says how many and how they were split."""
    files = pretrain_paths(cfg, base_dir)
    if files:
        docs, counted = _read_text_files(cfg, files)
        if len(docs) < 2:
            raise DataError(
                f"data.pretrain_text: found {len(docs)} document ({counted['split']}); needs at least 2, "
                "because one in ten (at least one) is held out for the forgetting metric. In a .txt, "
                "blank lines separate documents when there are any, otherwise each line is one",
                path=files[0][1] if len(files) == 1 else ", ".join(p for _, p in files))
        rng = random.Random(0)
        order = list(range(len(docs)))
        rng.shuffle(order)
        n_held = max(1, len(docs) // 10)
        held = {i for i in order[:n_held]}
        if report is not None:
            report["pretrain_text"] = {**counted, "held_out": n_held}
        return [d for i, d in enumerate(docs) if i not in held], [docs[i] for i in sorted(held)]
    world = build_world(world_config(cfg))
    return world.pretrain_docs, world.heldout_docs


def iter_rendered(convs: Iterable[Conversation], template: Any, mask: str, source: str) -> Iterator[Example]:
    """Each conversation rendered, one at a time: length fitting keeps (a cut of) each as it
    comes, so the untruncated renderings of a whole file are never held at once."""
    for c in convs:
        ids, m = render(c, template, mask=mask)
        yield Example(ids=np.asarray(ids, dtype=np.int32), mask=np.asarray(m, dtype=np.uint8), source=source)


def render_examples(convs: list[Conversation], template: Any, mask: str, source: str) -> list[Example]:
    return list(iter_rendered(convs, template, mask, source))


def prepare(cfg: Config, base_dir: str | None = None, report: dict | None = None,
            progress: Callable[[str], None] | None = None) -> PreparedData:
    """Load, filter, render and length-fit the job's data. ``base_dir`` resolves relative paths.
    ``progress(line)``: told every few seconds how far the reading and rendering of a large file
    are, and which step follows once one has taken long.

    ``report`` (a dict, filled in as the work goes): the counts, kept even when preparation
    fails, so a failed job can still say what its data looked like.

    The steps, in order: the sources (world or files: ``_load_and_split`` per file, where a
    per-file cap on the number of records belongs), then per training set the quality filter,
    rendering and length fitting (``_fit_training_set``), the dataset mix, the validation
    examples; a check of the prepared data as a whole goes on the returned ``PreparedData``.
    """
    get_template(cfg.template.name)  # an unknown name fails before any data is read
    said: list[str] = []  # what progress was told: once a step took long, the next ones are named

    def say(line: str) -> None:
        said.append(line)
        if progress is not None:
            progress(line)
    max_tokens = cfg.model.block_size + 1  # an example of L tokens fills L-1 positions
    report = report if report is not None else {}
    warnings: list[str] = []
    paths: dict[str, str] = {}

    if cfg.data.source == "world":
        world = build_world(world_config(cfg))
        pre_docs, held_docs = world.pretrain_docs, world.heldout_docs
        sets = {"world": world.train}
        loaded = dict(sets)
        val_convs = world.val
        eval_items, probe_items = list(world.eval_items), list(world.probe_items)
        facts = world.fact_completions()
        report["world"] = world.stats()
    else:
        pre_docs, held_docs = raw_text(cfg, base_dir, report)
        sets, val_convs, loaded = {}, [], {}
        for name, ds in cfg.data.datasets.items():
            path = paths[name] = resolve_path(ds.path, base_dir)
            loaded[name], train, val = _load_and_split(cfg, name, ds, path, report, warnings, say)
            sets[name] = train
            val_convs += val
        # held out from the same distribution the filters leave for training
        val_convs, report["quality.heldout"] = filter_quality(val_convs, cfg.data.quality)
        eval_items, probe_items = [], []
        facts = []
    tok = tokenizer_for(cfg, base_dir, pre_docs)
    template = get_template(cfg.template.name, tok)
    if tok.name != "bytes":
        report["tokenizer"] = tokenizer_report(tok, pre_docs)

    rendered: dict[str, list[Example]] = {}
    fitting: dict[str, list[Conversation]] = {}  # what the quality filters kept, for the fit check
    for name, convs in sets.items():
        fitting[name], rendered[name] = _fit_training_set(cfg, name, convs, template, report, warnings,
                                                          paths.get(name), say)
    if len(rendered) > 1 or cfg.mix.weights:
        weights = {n: float(cfg.mix.weights.get(n, 1.0)) for n in rendered}
        train_examples, mrep = mix_datasets(rendered, weights, seed=cfg.train.seed)
        report["datasets"] = mrep
    else:
        train_examples = next(iter(rendered.values()))
    if said:
        say(f"data: checking how the {sum(map(len, fitting.values())) + len(val_convs)} conversations fit "
            f"model.block_size={cfg.model.block_size}")
    report["fit"] = data_fit({**fitting, "heldout": val_convs}, template, cfg.template.mask,
                             cfg.model.block_size, cfg.eval.max_new_tokens)
    warnings += fit_warnings(report["fit"])
    val_examples, vrep = fit_length(iter_rendered(val_convs, template, "assistant", "val"), max_tokens, "truncate")
    report["length.val"] = vrep
    if val_convs and not val_examples:
        warnings.append(f"none of the {len(val_convs)} validation conversations keeps an answer token within "
                        f"model.block_size={cfg.model.block_size}: response_loss is not measured")

    follow_prompts = [it.prompt for it in eval_items] if eval_items else [_without_last_answer(c) for c in val_convs]
    return PreparedData(
        template=template,
        pretrain_tokens=join_docs(pre_docs, tok),
        heldout_tokens=join_docs(held_docs, tok),
        train_examples=train_examples,
        val_examples=val_examples,
        eval_items=eval_items,
        probe_items=probe_items,
        follow_prompts=follow_prompts,
        report=report,
        warnings=warnings,
        fact_completions=facts,
        conversations=loaded,
    )


def _fit_training_set(cfg: Config, name: str, convs: list[Conversation], template: Any, report: dict,
                      warnings: list[str], path: str | None, say: Callable[[str], None] | None = None
                      ) -> tuple[list[Conversation], list[Example]]:
    """One training set: quality filter, render with the template's loss mask, fit to the block.
    Returns (the conversations the filters kept, their fitted examples)."""
    kept, qrep = filter_quality(convs, cfg.data.quality)
    report[f"quality.{name}"] = qrep
    rendering = kept
    if say is not None:
        tell = ReadProgress(lambda f, n: say(f"data: rendering {name}: {n} of {len(kept)} conversations"))
        rendering = (tell(i / len(kept), i) or c for i, c in enumerate(kept, 1))
    exs, lrep = fit_length(iter_rendered(rendering, template, cfg.template.mask, name), cfg.model.block_size + 1,
                           cfg.train.truncation)
    report[f"length.{name}"] = lrep
    if not exs:
        raise DataError(f"dataset {name!r}: no training example left: {_drop_counts(report, name, cfg)}", path=path)
    dropped = lrep["dropped_too_long"] + lrep["dropped_no_trained_tokens"]
    if dropped:
        warnings.append(f"dataset {name!r}: {dropped} of {lrep['n_in']} training conversations dropped by "
                        f"length fitting ({_drop_counts(report, name, cfg)})")
    return kept, exs


@dataclass
class FittedExample:
    """One conversation as a job trains on it: rendered, then fitted to the model's block."""

    rendered: Example  # before the length policy
    fitted: Example | None  # after it; None when the policy dropped it
    status: str  # kept | truncated | dropped: too long | dropped: no trained tokens left


    @property
    def shown(self) -> Example:
        """What to show: the fitted example, or the rendered one when it was dropped."""
        return self.fitted if self.fitted is not None else self.rendered

    def spans(self) -> list[tuple[str, bool]]:
        """``shown`` as (text, trained) runs: consecutive ids with the same mask decoded together."""
        ids, mask = self.shown.ids.tolist(), self.shown.mask.tolist()
        out: list[tuple[str, bool]] = []
        start = 0
        for i in range(1, len(ids) + 1):
            if i == len(ids) or bool(mask[i]) != bool(mask[start]):
                out.append((self.tok.decode(ids[start:i]), bool(mask[start])))
                start = i
        return out

    tok: Any = field(default_factory=ByteTokenizer, repr=False)


def fit_example(cfg: Config, conv: Conversation, source: str, tok: Any = None) -> FittedExample:
    """``conv`` rendered with the job's template (encoding with ``tok``, the config's tokenizer
    when None) and loss mask, and its length policy applied."""
    tok = tok if tok is not None else tokenizer_for(cfg)
    ids, mask = render(conv, get_template(cfg.template.name, tok), mask=cfg.template.mask)
    rendered = Example(ids, mask, source)
    fitted, rep = fit_length([rendered], cfg.model.block_size + 1, cfg.train.truncation)
    if fitted:
        return FittedExample(rendered, fitted[0], "truncated" if rep["truncated"] else "kept", tok)
    why = "too long" if rep["dropped_too_long"] else "no trained tokens left"
    return FittedExample(rendered, None, f"dropped: {why}", tok)


def tokenizer_report(tok: Any, docs: list[str]) -> dict:
    """Which tokenizer a job used, and (for BPE) how much text a token holds on its pre-training
    documents."""
    out: dict = {"name": tok.name, "vocab_size": int(tok.vocab_size)}
    if tok.name != "bytes":
        out["merges_sha256"] = tok.digest
        n_chars = sum(len(d) for d in docs)
        n_bytes = sum(len(d.encode("utf-8")) for d in docs)
        n_tokens = sum(len(x) for x in tok.encode_batch(docs))
        if n_tokens:
            out["pretrain_chars_per_token"] = n_chars / n_tokens
            out["pretrain_bytes_per_token"] = n_bytes / n_tokens
    return out


def training_conversations(cfg: Config, base_dir: str | None = None) -> dict[str, list[Conversation]]:
    """Each training set's conversations as the job trains on them, in order: after deduplication,
    the held-out split, the per-file cap and the quality filter, before rendering and length
    fitting (the world's training set for source=world); for showing examples without the rest."""
    if cfg.data.source == "world":
        sets = {"world": build_world(world_config(cfg)).train}
    else:
        sets = {name: _load_and_split(cfg, name, ds, resolve_path(ds.path, base_dir), {}, [])[1]
                for name, ds in cfg.data.datasets.items()}
    return {name: filter_quality(convs, cfg.data.quality)[0] for name, convs in sets.items()}


def _load(ds: Any, path: str, report: dict, max_file_mb: float,
          progress: Callable[[float, int], None] | None = None) -> list[Conversation]:
    return load_conversations(path, ds.format, role_map=dict(ds.role_map) or None,
                              on_bad_record=ds.on_bad_record, report=report, max_file_mb=max_file_mb,
                              progress=progress)


def _load_and_split(cfg: Config, name: str, ds: Any, path: str, report: dict, warnings: list[str],
                    progress: Callable[[str], None] | None = None
                    ) -> tuple[list[Conversation], list[Conversation], list[Conversation]]:
    """One dataset file: load, remove exact duplicates, then hold out ``data.val_fraction``.
    Returns (as loaded, training, held-out) conversations."""
    load_report: dict = {}
    reading = None
    if progress is not None:
        def reading(fraction: float, records: int) -> None:
            progress(f"data: reading {name} ({path}): {fraction:.0%} read, {records} records so far")
    convs = loaded = _load(ds, path, load_report, cfg.data.max_file_mb, reading)
    report[f"load.{name}"] = load_report
    warnings.extend(f"dataset {name!r}: {w}" for w in load_report["warnings"])
    if load_report["skipped"]:
        reasons = ", ".join(f"{k}: {v}" for k, v in load_report["skipped_reasons"].items())
        n_all = load_report["loaded"] + load_report["skipped"]
        first = load_report["skipped_examples"][0] if load_report["skipped_examples"] else ""
        warnings.append(f"dataset {name!r}: skipped {load_report['skipped']} of {n_all} records of {path} "
                        f"(on_bad_record=skip; {reasons}); first: {first}")
    if cfg.data.quality.dedup:
        n_in = len(convs)
        convs, n_dup = dedup_conversations(convs)
        report[f"dedup.{name}"] = {"n_in": n_in, "duplicates": n_dup, "n_kept": len(convs)}
    if len(convs) < 2:
        raise DataError(f"dataset {name!r} has {len(convs)} usable distinct conversation(s); need at least 2 "
                        "(one is held out for validation)", path=path)
    rng = random.Random(cfg.train.seed)
    order = list(range(len(convs)))
    rng.shuffle(order)
    n_val = max(1, round(cfg.data.val_fraction * len(convs)))
    val_idx = set(order[:n_val])
    report[f"split.{name}"] = {"train": len(convs) - n_val, "val": n_val}
    train = cap_examples([c for i, c in enumerate(convs) if i not in val_idx], name, ds, cfg.train.seed, report)
    return loaded, train, [convs[i] for i in sorted(val_idx)]


def cap_examples(train: list[Conversation], name: str, ds: Any, seed: int, report: dict) -> list[Conversation]:
    """``data.datasets.NAME.max_examples`` of the training conversations (0: all), nested across sizes."""
    n = int(getattr(ds, "max_examples", 0) or 0)
    if n < 0:
        raise ConfigError(f"data.datasets.{name}.max_examples must be >= 0 (0: all), got {n}")
    kept = nested_subset(train, n, f"{name}:{seed}")
    if len(kept) < len(train):
        report[f"cap.{name}"] = {"n_in": len(train), "max_examples": n, "n_kept": len(kept)}
    return kept


def _drop_counts(report: dict, name: str, cfg: Config) -> str:
    """What happened to a dataset's conversations, rule by rule, from the report."""
    parts = []
    load = report.get(f"load.{name}")
    if load:
        parts.append(f"{load['loaded']} loaded")
        if load["skipped"]:
            parts.append(f"{load['skipped']} bad records skipped")
    dedup = report.get(f"dedup.{name}")
    if dedup:
        parts.append(f"{dedup['duplicates']} duplicates removed")
    split = report.get(f"split.{name}")
    if split:
        parts.append(f"{split['val']} held out for validation")
    q = report.get(f"quality.{name}")
    if q:
        removed = ", ".join(f"{k}={v}" for k, v in q["removed"].items() if v) or "none"
        parts.append(f"quality filters removed {q['n_in'] - q['n_kept']} of {q['n_in']} ({removed})")
    length = report.get(f"length.{name}")
    if length:
        parts.append(f"length fitting to model.block_size={cfg.model.block_size} with "
                     f"train.truncation={cfg.train.truncation}: dropped_too_long={length['dropped_too_long']}, "
                     f"dropped_no_trained_tokens={length['dropped_no_trained_tokens']}, "
                     f"truncated={length['truncated']}")
    return "; ".join(parts)


def data_counts_line(report: dict) -> str:
    """One line of what the data preparation kept and dropped (printed once per job)."""
    out = []
    for key, rep in report.items():
        if key.startswith("load."):
            out.append(f"{key[5:]}: {rep['loaded']} loaded, {rep['skipped']} skipped")
        elif key.startswith("dedup.") and rep["duplicates"]:
            out.append(f"{key[6:]}: {rep['duplicates']} duplicates")
        elif key.startswith("quality.") and rep["n_in"] != rep["n_kept"]:
            out.append(f"{key[8:]}: quality filters removed {rep['n_in'] - rep['n_kept']}")
        elif key.startswith("length.") and rep["n_in"] != rep["n_kept"]:
            out.append(f"{key[7:]}: length fitting dropped {rep['n_in'] - rep['n_kept']}")
    return "; ".join(out)


def _without_last_answer(conv: Conversation) -> Conversation:
    """The conversation up to (not including) its last assistant turn; that turn's text is kept
    as ``meta["reference"]``."""
    prompt, answer = split_last_answer(conv)
    if answer is not None:
        prompt.meta["reference"] = answer
    return prompt
