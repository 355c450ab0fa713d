"""Generation throughput of the numpy GPT with and without the KV cache.

    python benchmarks/generation.py --prompts 8 --new 96 --threads 1 [--json]

Batched greedy generation on the "mini" model from prompts of different lengths
(16..48 tokens); tokens/s counts new tokens only. Stop ids are disabled so both paths
produce the same number of tokens, and the two outputs are checked to be identical.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from sft_sweep.nn import GPT, GPTConfig, generate  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--new", type=int, default=64, help="new tokens per prompt")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    model = GPT(GPTConfig(), seed=0, threads=args.threads)
    rng = np.random.default_rng(0)
    lengths = np.linspace(16, 48, args.prompts).astype(int)
    prompts = [rng.integers(0, 256, n).tolist() for n in lengths]
    new = min(args.new, model.config.block_size - int(lengths.max()))
    generate(model, prompts[:1], 2)                                   # warm-up
    result = {"prompts": args.prompts, "new_tokens": new, "threads": args.threads}
    outs = {}
    for use_cache in (True, False):
        t = time.perf_counter()
        out = generate(model, prompts, new, use_cache=use_cache)
        dt = time.perf_counter() - t
        outs[use_cache] = out
        key = "cached_tokens_per_s" if use_cache else "uncached_tokens_per_s"
        result[key] = round(sum(map(len, out)) / dt, 1)
    result["speedup"] = round(result["cached_tokens_per_s"] / result["uncached_tokens_per_s"], 2)
    result["identical"] = outs[True] == outs[False]
    model.close()
    if args.json:
        print(json.dumps(result))
        return
    print(f"mini model, {args.prompts} prompts (16..48 tokens), {new} new tokens each, "
          f"{args.threads} thread(s), greedy")
    print(f"with KV cache     {result['cached_tokens_per_s']:10.0f} tokens/s")
    print(f"full recompute    {result['uncached_tokens_per_s']:10.0f} tokens/s")
    print(f"speedup           {result['speedup']:10.2f} x   (outputs identical: {result['identical']})")


if __name__ == "__main__":
    main()
