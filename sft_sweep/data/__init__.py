"""The data layer: everything between a data file (or the built-in world) and a batch.

- :mod:`.conversation`: ``Turn`` / ``Conversation`` (roles system, user, assistant, tool)
- :mod:`.formats`: ``load_conversations`` (Alpaca, ShareGPT, OpenAI messages, ChatML text),
  ``load_raw_text``
- :mod:`.templates`: ``render`` / ``render_prompt`` with the ``chatml``, ``alpaca`` and
  ``plain`` templates and loss-mask modes
- :mod:`.world`: the built-in synthetic world (``build_world``)
- :mod:`.quality`, :mod:`.examples`, :mod:`.mixing`, :mod:`.batching`: filters, length policy,
  replay / dataset mixing (``ReplayMix``: each epoch's examples), padded or packed batches
- :mod:`.loss_weights`: how the SFT loss weighs its tokens (``train.loss_norm``)
- :mod:`.prepare`: ``prepare`` (a job's config -> conversations -> filters -> fitted examples),
  the one preparation the job, ``sft-sweep-inspect`` and the report share
"""

from .batching import Batch, Batches, make_batches
from .conversation import ROLES, Conversation, ConversationError, Turn
from .evalitem import EvalItem
from .examples import Example, fit_length, to_examples
from .formats import FORMATS, load_conversations, load_raw_text
from .writing import save_conversations
from .mixing import ReplayMix, mix_datasets, mix_replay, replay_stream, with_replay
from .prepare import (FittedExample, PreparedData, data_counts_line, fit_example, prepare,
                      pretrain_paths, pretrain_source, resolve_path, training_conversations, world_config)
from .quality import QualityConfig, dedup_conversations, filter_quality
from .templates import MASK_MODES, TEMPLATE_NAMES, Template, get_template, render, render_prompt
from .world import FactCompletion, World, WorldConfig, build_world

__all__ = [
    "Turn", "Conversation", "ConversationError", "ROLES",
    "load_conversations", "load_raw_text", "save_conversations", "FORMATS",
    "render", "render_prompt", "get_template", "Template", "TEMPLATE_NAMES", "MASK_MODES",
    "Example", "to_examples", "fit_length",
    "EvalItem", "WorldConfig", "World", "build_world", "FactCompletion",
    "QualityConfig", "filter_quality", "dedup_conversations",
    "mix_replay", "mix_datasets", "replay_stream",
    "make_batches", "Batch", "Batches",
    "prepare", "PreparedData", "fit_example", "FittedExample", "resolve_path", "world_config",
    "training_conversations",
    "pretrain_paths", "pretrain_source", "data_counts_line", "ReplayMix", "with_replay",
]
