"""The findings: claims about SFT checked against a sweep's collected tables, one module per family.

- :mod:`.core`: the claims every sweep is checked for (forgetting against the learning rate,
  epochs and replay, following, knowledge, the best learning rate, the recommended setting);
- :mod:`.story`: the quickstart's story, each value held against a fixed target;
- :mod:`.experiments`: claims of single experiments (loss normalisation, second turns);
- :mod:`.lessons`: the lessons of the data experiments (memorisation, data size, system prompts),
  judged on pooled held-out items;
- :mod:`.free_form`: a researcher's own data, judged on each job's paired intervals.

Each module exports one function ``RunSet -> list[Finding]``; ``analysis.registry`` lists them in
the order the report shows them. Every verdict follows the noise standard of ``analysis.noise``.
"""
