"""The built-in synthetic world: the default data, deterministic from a seed, no files.

Design. Invented countries, each with a capital and a language (people with birth years are an
option). A fraction ``probe_fraction`` of the entities are *probe* entities: their facts appear
in the pre-training prose only, never in the SFT data (``train``, ``val``, ``eval_items``, not
even as a distractor). So after SFT, a correct answer about a probe country is knowledge the
base model brought from pre-training, elicited by SFT: the measurable form of "SFT teaches the
model to answer, not new facts".

- Pre-training prose (:mod:`.prose`) states every fact many times and in varied forms,
  including Q/A statements in every question phrasing the SFT data uses. Held-out documents
  from the same generators measure forgetting (raw-text loss).
- SFT data (:mod:`.items`): questions about the non-probe countries in several phrasings (a
  terse one answered in one word), and in-context questions about invented countries that
  exist nowhere else ("People in X speak Y. What do people in X speak?": practice in copying
  the asked name into the answer). ``eval_items`` are held-out questions of the same kinds
  (prompts never in train / val); ``probe_items`` ask every probe fact in
  ``probe_phrasings`` phrasings. ``World.fact_completions()`` lists every asked fact in the
  prose's own phrasing ("The capital of X is"): greedy completion of these, no chat template,
  measures what the model knows whether or not it can answer questions.
- Available as settings, off by default: people and birth years (``n_people``), closed-set
  tasks (sums, reversals, capitals of words, counting runs: ``task_weights``), system prompts
  that set the answer format (``system_fraction``), two-exchange conversations
  (``multi_turn_fraction``), planted low-quality responses (``low_quality_fraction``: too
  short, repetitive, wrong) for the quality-filter experiment. On the mini model they did not
  pass the bar of the default: in the previous default world (closed-set facts stated 2-3 times
  each) the base completed 1 of 44 closed-set facts and 3 of 9 birth years. Format-setting
  system prompts are obeyed only with more: each prompted question under all three formats
  (``system_contrast``), a base that has seen bare-name answers (``one_word_answers``) and its
  names in capital letters (``caps_doc_fraction``), and 12 epochs at lr 1e-3; then 94% of the
  held-out format-prompted answers (one word 44/47, capitals 39/44, sentence 44/44;
  ``experiment=system_prompts``), against 0-6% one-word answers at the quickstart's budget.

Budget (measured on the mini model, 4 layers x 128 wide, byte-level, the quickstart's 800
pre-training steps of 16 x 128 tokens = 1.6M tokens). Defaults: 40 countries, 10 of them probe;
~98 KB of prose (each fact stated ~17 times, so seen ~280 times in pre-training; see
``World.stats()``); 450 training conversations, of which ~70% are in-context questions because
the 30 SFT countries x 9 phrasings give only ~270 distinct fact questions and the held-out
questions take ~95 of them. The base model then completed 59/60 SFT-entity and 19/20 probe facts
(world seed 0), 52/60 and 19/20 (seed 1), 54/60 and 19/20 (seed 2); 1000 steps gave 60/60 and
20/20 on seed 0. One-word answers to terse questions ("Capital of X?" -> "Y") were not learnt
(0/20 held-out after SFT with 1000 pre-training steps, against 62/74 for full-sentence answers),
hence ``one_word_answers`` is off: every answer repeats the prose's phrasing, which is the route
by which the fact is recalled. Grow ``n_countries`` or the prose only together with the
pre-training budget.

Modules: :mod:`.config` (``WorldConfig``), :mod:`.vocab` (vocabulary, phrasings, names),
:mod:`.prose` (documents), :mod:`.items` (instruction items), :mod:`.build` (``build_world``).
"""

from .build import FactCompletion, World, build_world, fixed_text
from .config import TASKS, WorldConfig

__all__ = ["WorldConfig", "World", "FactCompletion", "build_world", "fixed_text", "TASKS"]
