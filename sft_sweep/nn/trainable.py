"""What a training step differentiates: every parameter, a subset (frozen blocks), or low-rank
adapters of frozen weights. The model's backward follows a ``BackwardPlan``."""

from __future__ import annotations

from typing import NamedTuple

from .config import GPTConfig
from .params import LINEARS, param_table


class BackwardPlan(NamedTuple):
    """Which gradient products a training step forms, from the set of parameters that train.

    A frozen matrix still passes the input gradient on (the blocks above it need nothing from
    it, the blocks below it need that gradient), but its weight-gradient product is skipped, and
    the backward stops below the lowest block that trains."""

    head: bool                          # the tied head's and final LayerNorm's product
    embed: bool                         # the embeddings' gradient
    stop: int                           # lowest block the backward reaches (n_layer: none)
    linears: frozenset                  # (block, linear) whose weight gradient is formed
    zero: tuple                         # parameters not computed, zeroed in the gradient buffer
    lora: frozenset = frozenset()       # (block, linear) whose low-rank adapter's gradients are formed


class LoraAdapters(NamedTuple):
    """Low-rank adapters of frozen weights, W = W_base + scale * A @ B (the model holds W): the
    backward forms dA = scale * X^T (dY B^T) and dB = scale * (X A)^T dY from the layer's input X
    and output gradient dY, never the weight gradient X^T dY. Their gradients are written into the
    unused gradient slot of the weight they adapt ([dA | dB] where [dW; db] would be), so they
    travel with the rest of the gradient buffer; ``fits`` says whether a rank fits there."""

    scale: float
    ab: dict                            # (block, linear) -> (A (C_in, r), B (r, C_out))

    @staticmethod
    def fits(cin: int, cout: int, rank: int) -> bool:
        return rank * (cin + cout) <= (cin + 1) * cout

    @staticmethod
    def grad_names(i: int, lin: str) -> tuple[str, str]:
        return f"h.{i}.{lin}.lora_A", f"h.{i}.{lin}.lora_B"

    def grad_slots(self, flat, layout: dict, i: int, lin: str):
        """(dA, dB): views of block ``i``'s ``lin`` adapter gradients in a gradient buffer ``flat``
        laid out as ``layout`` (name -> (offset, shape)): [dA | dB] where the weight's would be."""
        a, _ = self.ab[(i, lin)]
        off, (cin, cout) = layout[f"h.{i}.{lin}.w"]
        rk = a.shape[1]
        return (flat[off:off + cin * rk].reshape(cin, rk),
                flat[off + cin * rk:off + cin * rk + rk * cout].reshape(rk, cout))


def backward_plan(cfg: GPTConfig, trainable: frozenset | None, lora=frozenset()) -> BackwardPlan:
    """The plan for ``trainable`` parameter names (None: every parameter) and the (block, linear)
    pairs that carry trained low-rank adapters."""
    names = [n for n, _ in param_table(cfg)]
    if trainable is None:
        return BackwardPlan(True, True, 0, frozenset((i, lin) for i in range(cfg.n_layer) for lin in LINEARS), ())
    unknown = sorted(set(trainable) - set(names))
    if unknown:
        raise ValueError(f"trainable names no parameter of the model: {unknown[:5]}")
    # a linear's product gives its weight, its bias and (through the fold) the LayerNorm before it
    before = {"attn.qkv": "ln1", "mlp.fc": "ln2"}
    linears = set()
    for i in range(cfg.n_layer):
        for lin in LINEARS:
            own = [f"h.{i}.{lin}.w", f"h.{i}.{lin}.b"]
            if lin in before:
                own += [f"h.{i}.{before[lin]}.w", f"h.{i}.{before[lin]}.b"]
            if any(n in trainable for n in own):
                linears.add((i, lin))
    embed = "wte" in trainable or "wpe" in trainable
    blocks = [i for i, _ in linears] + [i for i, _ in lora]
    stop = 0 if embed else min(blocks, default=cfg.n_layer)
    head = "wte" in trainable or "lnf.w" in trainable or "lnf.b" in trainable
    computed = set()
    for i, lin in linears:
        computed |= {f"h.{i}.{lin}.w", f"h.{i}.{lin}.b"}
        if lin in before:
            computed |= {f"h.{i}.{before[lin]}.w", f"h.{i}.{before[lin]}.b"}
    if head:
        computed |= {"wte", "lnf.w", "lnf.b"}
    if embed:
        computed.add("wpe")  # wte's rows are added to the head's gradient (zeroed when not formed)
    return BackwardPlan(head, embed, stop, frozenset(linears), tuple(n for n in names if n not in computed),
                        frozenset(lora))


_PLANS: dict = {}


def plan_for(cfg: GPTConfig, trainable: frozenset | None, lora: LoraAdapters | None = None) -> BackwardPlan:
    """``backward_plan``, computed once per (shape, trainable set, adapted layers) in each process."""
    targets = frozenset(lora.ab) if lora is not None else frozenset()
    key = (tuple(sorted(cfg.to_dict().items())), trainable, targets)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _PLANS[key] = backward_plan(cfg, trainable, targets)
    return plan
