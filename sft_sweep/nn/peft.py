"""What fine-tuning trains: every weight, low-rank adapters (LoRA), or a subset of the blocks.

A ``Tuning`` owns the parameters the optimiser updates (``params``) and turns the model's
gradients into theirs. The model always holds the weights it computes with, so evaluation,
generation, checkpoints and export need to know nothing of how they were trained.

- ``FullTuning``: the model's own parameters.
- ``FreezeTuning``: a subset of them; the model skips the weight-gradient products of the rest.
- ``LoraTuning``: for each target matrix W (C_in, C_out), a change ``scale * A @ B`` with A
  (C_in, r) and B (r, C_out) the only trained values, and W = W_base + scale * A @ B written into
  the model after each update. The model's backward forms A's and B's gradients from each layer's
  input and output gradient without the weight gradient (``gpt.LoraAdapters``); for a rank too
  large for that, they follow from the model's gradient G of W (the chain rule through a linear
  map, exact): dA = scale * G @ B^T, dB = scale * A^T @ G. A is drawn as PEFT draws it (Kaiming-uniform with a = sqrt(5), i.e.
  U(-1/sqrt(C_in), 1/sqrt(C_in))) and B = 0, so before the first update the model is the base to
  the bit. Only the target matrices' gradients are formed (their biases and the LayerNorms stay).

Each tuning also applies the pull toward where it started (``pull``), decoupled from the
gradient: ``theta -= lr * strength * (theta - theta_start)``, for what it trains.
"""

from __future__ import annotations

import math

import numpy as np

from .gpt import GPT, LINEARS, LoraAdapters

LORA_A, LORA_B = "lora_A", "lora_B"


def _flat_dict(shapes: dict[str, tuple[int, ...]], dtype) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One flat buffer and name -> view, so the optimiser updates it with vectorized passes."""
    flat = np.zeros(sum(math.prod(s) for s in shapes.values()), dtype=dtype)
    views, off = {}, 0
    for name, shape in shapes.items():
        n = math.prod(shape)
        views[name] = flat[off:off + n].reshape(shape)
        off += n
    return flat, views


class Tuning:
    """The full fine-tuning interface; subclasses narrow what trains."""

    method = "full"

    def __init__(self, model: GPT) -> None:
        self.model = model
        self.params: dict[str, np.ndarray] = model.params
        self._start: dict[str, np.ndarray] | None = None

    @property
    def trainable_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def grads(self, model_grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The gradients of ``params`` from the model's."""
        return model_grads

    def apply(self) -> None:
        """Writes what ``params`` imply into the model's weights (nothing when they are the model's)."""

    def pull(self, lr: float, strength: float) -> None:
        """theta -= lr * strength * (theta - theta_start) for every trained value (after an update)."""
        if strength <= 0:
            return
        if self._start is None:
            raise RuntimeError("mark_start() must be called before training with a pull toward the start")
        c = float(lr) * float(strength)
        for name, p in self.params.items():
            p -= c * (p - self._start[name])

    def mark_start(self) -> None:
        """Remembers the trained values as they are now: the point the pull draws toward."""
        self._start = {n: p.copy() for n, p in self.params.items()}

    def describe(self) -> dict:
        return {"method": self.method, "trainable_params": self.trainable_params,
                "total_params": int(self.model.num_params)}

    # what a checkpoint must hold besides the model's weights to resume exactly
    def state(self) -> dict[str, np.ndarray]:
        return {}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        if arrays:
            raise ValueError(f"{self.method} fine-tuning keeps no state besides the weights, got {sorted(arrays)[:3]}")


FullTuning = Tuning


class FreezeTuning(Tuning):
    """Only the parameters named in ``names`` train."""

    method = "freeze"

    def __init__(self, model: GPT, names) -> None:
        super().__init__(model)
        names = [n for n in model.params if n in set(names)]
        if not names:
            raise ValueError("no parameter trains")
        self.params = {n: model.params[n] for n in names}
        model.set_trainable(names)


def freeze_names(model: GPT, trainable_layers: int, train_embeddings: bool) -> list[str]:
    """The parameters that train when only ``trainable_layers`` blocks do: the last n (and the final
    LayerNorm), or the first n for a negative number; the embeddings too on request."""
    n_layer = model.config.n_layer
    if trainable_layers == 0 or abs(trainable_layers) > n_layer:
        raise ValueError(f"trainable_layers must be 1..{n_layer} or -1..-{n_layer}, got {trainable_layers}")
    blocks = range(n_layer - trainable_layers, n_layer) if trainable_layers > 0 else range(-trainable_layers)
    prefixes = tuple(f"h.{i}." for i in blocks)
    names = [n for n in model.params if n.startswith(prefixes)]
    if trainable_layers > 0:
        names += ["lnf.w", "lnf.b"]
    if train_embeddings:
        names += ["wte", "wpe"]
    return names


class LoraTuning(Tuning):
    """Low-rank adapters on ``targets`` (names among ``gpt.LINEARS``) of every block."""

    method = "lora"

    def __init__(self, model: GPT, rank: int, alpha: float, targets=LINEARS, rslora: bool = False,
                 seed: int = 0) -> None:
        super().__init__(model)
        unknown = [t for t in targets if t not in LINEARS]
        if unknown or not targets:
            raise ValueError(f"LoRA targets must be among {', '.join(LINEARS)}, got {list(targets)}")
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.rank, self.alpha, self.rslora = int(rank), float(alpha), bool(rslora)
        self.targets = [t for t in LINEARS if t in targets]
        self.scale = self.alpha / (math.sqrt(self.rank) if self.rslora else self.rank)
        self.weights = [f"h.{i}.{t}.w" for i in range(model.config.n_layer) for t in self.targets]
        shapes = {}
        for w in self.weights:
            cin, cout = model.params[w].shape
            shapes[f"{w[:-2]}.{LORA_A}"] = (cin, self.rank)
            shapes[f"{w[:-2]}.{LORA_B}"] = (self.rank, cout)
        self._flat, self.params = _flat_dict(shapes, model.dtype)
        rng = np.random.default_rng(seed)
        for w in self.weights:
            a = self.params[f"{w[:-2]}.{LORA_A}"]
            bound = 1.0 / math.sqrt(a.shape[0])
            a[...] = rng.uniform(-bound, bound, size=a.shape)
        self.base = {w: model.params[w].copy() for w in self.weights}
        self._gflat, self._gviews = _flat_dict(shapes, model.dtype)
        # the low-rank backward where every adapter fits it, else the weights' gradients
        self.low_rank = all(LoraAdapters.fits(*model.params[w].shape, self.rank) for w in self.weights)
        if self.low_rank:
            model.set_lora({w: (self.params[f"{w[:-2]}.{LORA_A}"], self.params[f"{w[:-2]}.{LORA_B}"])
                            for w in self.weights}, self.scale)
        else:
            model.set_trainable(self.weights)

    def delta(self, weight: str) -> np.ndarray:
        """scale * A @ B of one target weight."""
        stem = weight[:-2]
        d = self.params[f"{stem}.{LORA_A}"] @ self.params[f"{stem}.{LORA_B}"]
        d *= self.scale
        return d

    def apply(self) -> None:
        for w in self.weights:
            np.add(self.base[w], self.delta(w), out=self.model.params[w])

    def grads(self, model_grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.low_rank:  # the model formed them
            for name, g in self._gviews.items():
                g[...] = model_grads[name]
            return self._gviews
        s = self.scale
        for w in self.weights:
            stem = w[:-2]
            g = model_grads[w]
            a, b = self.params[f"{stem}.{LORA_A}"], self.params[f"{stem}.{LORA_B}"]
            da, db = self._gviews[f"{stem}.{LORA_A}"], self._gviews[f"{stem}.{LORA_B}"]
            np.matmul(g, b.T, out=da)
            da *= s
            np.matmul(a.T, g, out=db)
            db *= s
        return self._gviews

    def describe(self) -> dict:
        return {**super().describe(), "rank": self.rank, "alpha": self.alpha, "rslora": self.rslora,
                "scale": self.scale, "targets": list(self.targets)}

    def state(self) -> dict[str, np.ndarray]:
        return {n: p.copy() for n, p in self.params.items()}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        missing = sorted(set(self.params) - set(arrays))
        extra = sorted(set(arrays) - set(self.params))
        if missing or extra:
            raise ValueError(f"adapter state does not fit: missing {missing[:3]}, unexpected {extra[:3]}")
        for n, p in self.params.items():
            if arrays[n].shape != p.shape:
                raise ValueError(f"adapter {n!r} has shape {arrays[n].shape}, expected {p.shape}")
        for n, p in self.params.items():
            p[...] = arrays[n]
        self.apply()


def effective_rank(delta: np.ndarray, energy: float = 0.9) -> int:
    """The number of singular values of ``delta`` that hold ``energy`` of its squared singular
    values (0 for a zero matrix)."""
    s = np.linalg.svd(np.asarray(delta, dtype=np.float64), compute_uv=False)
    sq = s * s
    total = float(sq.sum())
    if total == 0.0:
        return 0
    return int(np.searchsorted(np.cumsum(sq) / total, energy - 1e-12) + 1)


__all__ = ["Tuning", "FullTuning", "FreezeTuning", "LoraTuning", "freeze_names", "effective_rank"]
