"""Training, validation and test splits of a library: fraction splits and filter splits.

Fraction split (``trainingFraction``, ``validationFraction``, ``testFraction``, each 0-1, summing to at most
1): each entity's identifiers are shuffled with ``seed`` (numpy's PCG64, entities in paging order) and cut
into the three parts, so every entity is represented in each part in proportion, and the same library and
seed always give the same split. An entity keeps at least one training identifier. An engine may leave one
fraction unset (``None``): it is the rest. What the fractions leave over is not used.

Filter split (``splitKey``): an identifier whose ``jsondata[splitKey]`` is ``train``/``training``,
``validation``/``validate`` or ``test`` goes to that part; any other identifier is left out (an item no filter matches is not
used). The fractions are then ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engines.interface import ConfigOption, EngineConfigError, EngineError

__all__ = ["FILTER_VALUES", "Split", "check_split_config", "split_options", "split_rows"]

FILTER_VALUES = {"train": "training", "training": "training", "validation": "validation", "validate": "validation",
                 "test": "test"}


def split_options(*, training: float | None, validation: float | None, test: float) -> tuple[ConfigOption, ...]:
    """The split keys with an engine's defaults (``None``: the rest)."""
    return (
        ConfigOption("trainingFraction", float, training,
                     "Share of each entity's identifiers trained on" + (" (default: what the others leave)." if training is None else "."), 0.0, 1.0),
        ConfigOption("validationFraction", float, validation,
                     "Share of each entity's identifiers that validates (calibration, early stopping)"
                     + (" (default: what the others leave)." if validation is None else "."), 0.0, 1.0),
        ConfigOption("testFraction", float, test, "Share of each entity's identifiers held out to measure the model "
                     "(evaluationResult); never trained or calibrated on.", 0.0, 1.0),
        ConfigOption("splitKey", str, "", "An identifier jsondata key whose value (train, validation or test) assigns "
                     "its split instead of the fractions; identifiers without one are left out.", None, None),
    )


PARTS = ("training", "validation", "test")


def _fractions(config: Mapping[str, Any]) -> tuple[dict[str, float], str | None]:
    """Each part's fraction, and which one is "the rest" (an unset fraction), if any."""
    given = {"training": config.get("trainingFraction"), "validation": config.get("validationFraction"),
             "test": config.get("testFraction")}
    if given["test"] is None:
        given["test"] = 0.0
    missing = [k for k, f in given.items() if f is None]
    known = sum(f for f in given.values() if f is not None)
    if known > 1.0 + 1e-9:
        raise EngineConfigError(
            f"trainingFraction, validationFraction and testFraction must sum to at most 1, got {known:g}")
    rest = missing[0] if missing else None
    for k in missing:  # engines leave at most one unset; a second would get nothing
        given[k] = 0.0
    if rest is not None:
        given[rest] = max(0.0, 1.0 - known)
    return {k: float(v) for k, v in given.items()}, rest


def _counts(n: int, fractions: dict[str, float], rest: str | None) -> dict[str, int]:
    """Rows of each part for an entity of ``n``: validation and test rounded from their fractions; training
    too when the fractions leave some rows unused, otherwise it takes every row the others do not."""
    whole = rest is not None or sum(fractions.values()) >= 1.0 - 1e-9
    n_val = int(round(n * fractions["validation"]))
    n_test = int(round(n * fractions["test"]))
    # Every entity keeps a training row: validation, then test, give way.
    n_val = min(n_val, max(0, n - 1))
    n_test = min(n_test, max(0, n - 1 - n_val))
    n_train = n - n_val - n_test if whole else min(max(1, int(round(n * fractions["training"]))), n - n_val - n_test)
    return {"training": n_train, "validation": n_val, "test": n_test}


def check_split_config(config: Mapping[str, Any]) -> None:
    """The checks across keys (EngineInfo.check): the sum, and something left to train on."""
    fractions, _ = _fractions(config)
    if not config.get("splitKey") and fractions["training"] <= 0.0:
        raise EngineConfigError("trainingFraction must leave something to train on (it is 0)")
    if len(config.get("splitKey") or "") > 128:
        raise EngineConfigError("config key 'splitKey' may be at most 128 characters")


@dataclass(frozen=True, slots=True)
class Split:
    """Row indices (sorted) of each part; ``method`` is "fraction" or "filter"."""

    training: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    unused: int
    method: str
    seed: int

    def sizes(self) -> dict[str, Any]:
        """The form reported in an artifact's ``jsondata.evaluation.splits``."""
        return {"training": int(self.training.size), "validation": int(self.validation.size), "test": int(self.test.size),
                "unused": self.unused, "method": self.method, "seed": self.seed}


def split_rows(labels: np.ndarray, config: Mapping[str, Any], *, seed: int,
               filter_values: Sequence[str | None] | None = None) -> Split:
    """Split rows with entity index ``labels`` by ``config`` (see the module docstring).

    ``filter_values``: each row's ``jsondata[splitKey]`` when ``splitKey`` is set. Raises EngineError when a
    filter split leaves nothing to train on.
    """
    labels = np.asarray(labels)
    empty = np.empty(0, np.int64)
    if config.get("splitKey"):
        values = [FILTER_VALUES.get(str(v).strip().lower()) if v is not None else None for v in (filter_values or [])]
        if len(values) != labels.size:
            raise EngineError("the filter split needs each identifier's jsondata value")
        parts = {name: np.array([i for i, v in enumerate(values) if v == name], np.int64)
                 for name in ("training", "validation", "test")}
        if parts["training"].size == 0:
            raise EngineError(
                f"splitKey {config['splitKey']!r} marks no usable identifier as train (values: train, validation, test)")
        used = sum(p.size for p in parts.values())
        return Split(parts["training"], parts["validation"], parts["test"], int(labels.size - used), "filter", seed)
    fractions, rest = _fractions(config)
    rng = np.random.default_rng(seed)
    train_rows, val_rows, test_rows = [], [], []
    unused = 0
    for entity in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == entity))
        c = _counts(rows.size, fractions, rest)
        # Validation first: with no test split, each entity's first rows of a seeded permutation validate.
        val_rows.append(rows[: c["validation"]])
        test_rows.append(rows[c["validation"] : c["validation"] + c["test"]])
        train_rows.append(rows[c["validation"] + c["test"] : c["validation"] + c["test"] + c["training"]])
        unused += rows.size - sum(c.values())

    def joined(parts: list[np.ndarray]) -> np.ndarray:
        return np.sort(np.concatenate(parts)).astype(np.int64) if parts else empty

    return Split(joined(train_rows), joined(val_rows), joined(test_rows), unused, "fraction", seed)
