"""The classifier engine: a softmax regression head trained on the library's embeddings."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np

from engines.artifact import ArtifactRecognizer, CONTENT_TYPE, ArtifactMeta, Label, build_classifier_artifact
from engines.backbone import BackboneSpec
from engines.backbone_choice import choose_backbone
from engines.calibration import balanced_threshold
from engines.evaluation import per_entity
from engines.interface import Artifact, ConfigOption, EngineInfo, TrainingContext
from engines.options import PIPELINE_OPTIONS
from engines.softmax import Hyper, SoftmaxModel, fit
from engines.splits import check_split_config, split_options, split_rows
from engines.training import base_report, prepare

__all__ = ["ClassifierEngine"]

DEFAULT_THRESHOLD = 0.0  # no validation rows to calibrate with: accept the top class
PRIOR_THRESHOLD = 0.5  # no impostor scores (two entities, every answer right): the top class holds most of the mass

CLASSIFIER_OPTIONS: tuple[ConfigOption, ...] = (
    *split_options(training=0.8, validation=None, test=0.0),
    ConfigOption("seed", int, 0, "Seed of the split and mini-batch order.", 0, 2**31 - 1),
    ConfigOption("learningRate", float, 0.01, "Adam step size.", 1e-5, 1.0),
    ConfigOption("weightDecay", float, 1e-4, "L2 penalty on the weights.", 0.0, 1.0),
    ConfigOption("miniBatchSize", int, 64, "Rows per gradient step.", 1, 4096),
    ConfigOption("maxEpochs", int, 200, "Most passes over the training rows.", 1, 10_000),
    ConfigOption("patience", int, 10, "Epochs without a better validation loss before stopping.", 1, 1000),
    ConfigOption("refitOnAll", bool, True, "Retrain on the training and validation rows for the early-stopped epoch count.", None, None),
)


class ClassifierEngine(ArtifactRecognizer):
    """Classifies an image into one of the library's entities with a softmax over embeddings.

    Training splits each entity's identifiers (``trainingFraction``, ``validationFraction``,
    ``testFraction``, ``seed``, or ``splitKey``: engines.splits), trains with Adam,
    cross-entropy and L2 weight decay, and stops when the validation loss has not improved for
    ``patience`` epochs, keeping the best epoch. Accuracy is test-split top-1, or validation top-1
    without a test split. The threshold is
    calibrated on validation max-probabilities, correct (genuine) against impostors: incorrect answers and
    each validation row asked as a stranger (:func:`stranger_scores`), maximising balanced accuracy
    (engines.calibration). With ``refitOnAll`` (default) the shipped
    weights are retrained on the training and validation rows for the best epoch count, so validation rows are not
    wasted; the reported accuracy and threshold come from the validated model, an estimate for
    the refit one. With ``refitOnAll`` false the validated weights ship as measured.
    """

    info = EngineInfo(
        id="engineshed-classifier",
        name="Classifier (softmax regression)",
        category_id="object-classification",
        identifier_type_ids=("image", "face"),
        library_type_ids=("objects", "people"),
        version="1",
        config=PIPELINE_OPTIONS + CLASSIFIER_OPTIONS,
        check=check_split_config,
    )

    def __init__(self, backbone: BackboneSpec | None = None) -> None:
        """``backbone`` replaces the built-in one (then ``imageSize`` is ignored)."""
        self.backbone = backbone

    async def train(self, ctx: TrainingContext) -> Artifact:
        """Embed the library, fit and validate the softmax head, and build the ONNX artifact."""
        config = ctx.config
        chosen = await choose_backbone(ctx, self.backbone)
        prepared = await prepare(chosen, self.backbone)
        started = time.perf_counter()
        x, y = prepared.vectors, prepared.labels
        classes = len(prepared.entity_ids)
        hyper = Hyper(
            learning_rate=config["learningRate"],
            weight_decay=config["weightDecay"],
            batch_size=config["miniBatchSize"],
            max_epochs=config["maxEpochs"],
            patience=config["patience"],
            seed=config["seed"],
        )
        split = split_rows(y, config, seed=config["seed"],
                           filter_values=[r.split for r in prepared.embedded.refs] if config["splitKey"] else None)
        train_rows, val_rows, test_rows = split.training, split.validation, split.test
        validated = await _fit_off_loop(x[train_rows], y[train_rows], classes, hyper, x[val_rows], y[val_rows])
        await ctx.progress(0.93, f"validated after {validated.epochs} epochs")
        evaluation: dict[str, Any] = {"method": "stratified validation split, top-1", "validationRows": int(val_rows.size)}
        accuracy = None
        if val_rows.size:
            p = validated.probabilities(x[val_rows])
            predicted, confidence = p.argmax(axis=1), p.max(axis=1)
            correct = predicted == y[val_rows]
            accuracy = float(correct.mean())
            impostor = np.concatenate([confidence[~correct], stranger_scores(p, y[val_rows])])
            calibration = balanced_threshold(confidence[correct], impostor, default=DEFAULT_THRESHOLD, prior=PRIOR_THRESHOLD)
            evaluation["perEntity"] = per_entity(prepared.entity_ids, y[val_rows], correct)
        else:
            calibration = balanced_threshold(np.empty(0), np.empty(0), default=DEFAULT_THRESHOLD)
        evaluation["top1"] = accuracy
        evaluation["epochs"] = validated.epochs
        if test_rows.size:  # the held-out measure: what the validated model gets right on rows it never saw
            p = validated.probabilities(x[test_rows])
            correct = p.argmax(axis=1) == y[test_rows]
            accuracy = float(correct.mean())
            evaluation.update(method="held-out test split, top-1", evaluated=int(test_rows.size), top1=accuracy,
                              validationTop1=evaluation["top1"],
                              perEntity=per_entity(prepared.entity_ids, y[test_rows], correct))
        evaluation["splits"] = split.sizes()
        # The false-accept rate the threshold is set for, beside the accuracy it was measured with.
        evaluation["falseAcceptRate"] = calibration.false_accept_rate
        evaluation["falseAcceptRateBound"] = calibration.false_accept_bound
        model = validated
        if config["refitOnAll"] and val_rows.size:
            # Every row but the test split's (and those a split left unused).
            rows = np.sort(np.concatenate([train_rows, val_rows]))
            model = await _fit_off_loop(x[rows], y[rows], classes, hyper, None, None, epochs=validated.epochs)
        await ctx.progress(0.97, "fitted")
        ids: list[list[str]] = [[] for _ in range(classes)]
        for label, ref in zip(y, prepared.embedded.refs, strict=True):
            ids[int(label)].append(ref.identifier_id)
        meta = ArtifactMeta(
            engine=self.info.id,
            engine_version=self.info.version,
            backbone=prepared.spec.name,
            backbone_digest=prepared.spec.digest,
            library_id=ctx.library_id,
            image_size=prepared.spec.input_size,
            channels=prepared.spec.channels,
            top_k=config["topK"],
            threshold=calibration.threshold,
            score="probability",
            labels=tuple(
                Label(e, prepared.entity_ids[e], prepared.entity_names[e], tuple(ids[e])) for e in range(classes)
            ),
        )
        data = await asyncio.to_thread(build_classifier_artifact, prepared.spec, model.weights, model.bias, meta)
        report = base_report(self.info, prepared, ctx)
        report["evaluation"] = evaluation
        if chosen.comparison is not None:
            evaluation["backboneComparison"] = chosen.comparison
        report["finalWeights"] = "refit on all rows" if model is not validated else "validated"
        report["threshold"] = calibration.threshold
        report["calibration"] = calibration.as_json()
        report["timings"]["fit"] = round(time.perf_counter() - started, 4)
        await ctx.progress(1.0, "artifact built")
        return Artifact(data, CONTENT_TYPE, report, accuracy)


def stranger_scores(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """What each validation row would score were its own entity not enrolled: the top probability of the
    other classes, renormalised without its own (the softmax with that class's logit removed).

    A softmax on a few photos per person puts 0.9999 on every validation row it answers right, so right
    and wrong answers alone leave no impostors to calibrate with; these say where strangers score. One
    per row, so a library of 3 photos per person has as many impostor scores as validation photos."""
    if probabilities.shape[1] < 3 or labels.size == 0:  # with two classes the other one always holds 1.0
        return np.empty(0, np.float64)
    rows = np.arange(labels.size)
    others = probabilities.astype(np.float64, copy=True)
    own = others[rows, labels]
    others[rows, labels] = -np.inf
    return others.max(axis=1) / np.maximum(1.0 - own, 1e-12)


async def _fit_off_loop(
    x: np.ndarray,
    y: np.ndarray,
    classes: int,
    hyper: Hyper,
    x_val: np.ndarray | None,
    y_val: np.ndarray | None,
    *,
    epochs: int | None = None,
) -> SoftmaxModel:
    # A cancelled await does not stop a thread; the event makes the fit give up at its next step.
    stop = threading.Event()
    try:
        return await asyncio.to_thread(fit, x, y, classes, hyper, x_val=x_val, y_val=y_val, epochs=epochs, stop=stop)
    except asyncio.CancelledError:
        stop.set()
        raise
