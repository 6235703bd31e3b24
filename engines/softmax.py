"""Softmax regression trained with mini-batch Adam in numpy: the classifier engine's head.

Features are standardised with the training rows' mean and spread; the standardisation is folded
into the exported weights, so the artifact needs only MatMul + Add + Softmax.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Hyper", "SoftmaxModel", "fit"]


class Stopped(Exception):
    """Raised inside the fitting thread when its task was cancelled."""


@dataclass(frozen=True, slots=True)
class Hyper:
    """Training hyperparameters (config keys in brackets)."""

    learning_rate: float = 0.01  # [learningRate]
    weight_decay: float = 1e-4  # [weightDecay], L2 on the weights
    batch_size: int = 64  # [miniBatchSize]
    max_epochs: int = 200  # [maxEpochs]
    patience: int = 10  # [patience], epochs without a better validation loss before stopping
    seed: int = 0  # [seed]


@dataclass(slots=True)
class SoftmaxModel:
    """Weights over raw features: ``softmax(x @ weights + bias)``, standardisation folded in."""

    weights: np.ndarray  # [D, C] float32
    bias: np.ndarray  # [C] float32
    epochs: int  # epochs trained (the best epoch when early stopping ran)
    val_losses: list[float] = field(default_factory=list)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities for rows ``x`` [N, D]."""
        return _softmax(x @ self.weights + self.bias)


def fit(
    x: np.ndarray,
    y: np.ndarray,
    classes: int,
    hyper: Hyper,
    *,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    epochs: int | None = None,
    stop: threading.Event | None = None,
) -> SoftmaxModel:
    """Fit on (x, y); with validation rows, stop early on validation loss and keep the best epoch.

    Without validation rows, train for ``epochs`` (default ``hyper.max_epochs``). ``stop``, when
    set from another thread, aborts between mini-batches with :class:`Stopped`.
    """
    x = np.asarray(x, np.float32)
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-6
    xs = (x - mean) / scale
    has_val = x_val is not None and y_val is not None and len(y_val) > 0
    xv = (np.asarray(x_val, np.float32) - mean) / scale if has_val else None
    rng = np.random.default_rng(hyper.seed)
    d = xs.shape[1]
    w = np.zeros((d, classes), np.float32)
    b = np.zeros(classes, np.float32)
    adam = _Adam([w, b], hyper.learning_rate)
    onehot = np.eye(classes, dtype=np.float32)
    limit = hyper.max_epochs if has_val else (epochs or hyper.max_epochs)
    best = (np.inf, w.copy(), b.copy(), 0)
    val_losses: list[float] = []
    for epoch in range(1, limit + 1):
        order = rng.permutation(len(xs))
        for start in range(0, len(order), hyper.batch_size):
            if stop is not None and stop.is_set():
                raise Stopped()
            rows = order[start : start + hyper.batch_size]
            p = _softmax(xs[rows] @ w + b)
            delta = (p - onehot[y[rows]]) / rows.size
            adam.step([xs[rows].T @ delta + hyper.weight_decay * w, delta.sum(axis=0)])
        if has_val:
            loss = _cross_entropy(_softmax(xv @ w + b), y_val)
            val_losses.append(loss)
            if loss < best[0] - 1e-6:
                best = (loss, w.copy(), b.copy(), epoch)
            elif epoch - best[3] >= hyper.patience:
                break
    if has_val:
        _, w, b, trained = best
    else:
        trained = limit
    # Fold standardisation: ((x - m) / s) W + b  ==  x (W / s) + (b - (m / s) W)
    weights = (w / scale[:, None]).astype(np.float32)
    bias = (b - (mean / scale) @ w).astype(np.float32)
    return SoftmaxModel(weights, bias, trained, val_losses)


class _Adam:
    def __init__(self, params: list[np.ndarray], lr: float, beta1: float = 0.9, beta2: float = 0.999) -> None:
        self.params, self.lr, self.beta1, self.beta2 = params, lr, beta1, beta2
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads: list[np.ndarray]) -> None:
        self.t += 1
        correction = np.sqrt(1 - self.beta2**self.t) / (1 - self.beta1**self.t)
        for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * g * g
            p -= (self.lr * correction * m / (np.sqrt(v) + 1e-8)).astype(p.dtype)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _cross_entropy(p: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(np.maximum(p[np.arange(len(y)), y], 1e-12)).mean())
