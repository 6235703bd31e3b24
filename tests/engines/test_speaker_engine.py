"""The speaker engine on synthetic voices (espeak-ng), trained through an in-memory context.

Held-out top-1 and the calibrated threshold are printed (run with -s to see them).
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from engines.interface import EngineError, NothingToTrain
from engines.speaker.engine import SpeakerEngine
from sampledata.library import Entry
from sampledata.speech import ESPEAK, VOICES, encode, sentence, speak, wav_bytes
from tests.engines.memory_context import MemoryContext
from tests.support.requirements import need

if ESPEAK is None:
    need("espeak-ng", "espeak-ng is not installed (apt-get install -y espeak-ng)")

TRAIN_PER_SPEAKER = 3
HELD_OUT_PER_SPEAKER = 2


@pytest.fixture(scope="module")
def encoder() -> bytes:
    from gateway.services.models.pull.catalogue import PullError
    from sampledata.speaker import encoder_bytes

    try:
        return encoder_bytes()
    except PullError as exc:
        need("registry", f"the speaker model is not cached and the registry is unreachable: {exc}")


@pytest.fixture(scope="module")
def recordings() -> dict[str, list[bytes]]:
    """Per speaker: TRAIN + HELD_OUT recordings, each a different sentence with its own noise."""
    out: dict[str, list[bytes]] = {}
    for s, speaker in enumerate(VOICES):
        out[speaker] = []
        for k in range(TRAIN_PER_SPEAKER + HELD_OUT_PER_SPEAKER):
            seed = 100 * s + k
            samples, rate = speak(speaker, sentence(seed), noise=0.01, seed=seed)
            out[speaker].append(wav_bytes(samples, rate))
    return out


def entries(recordings: dict[str, list[bytes]], extra: list[Entry] = ()) -> list[Entry]:
    out = [
        Entry(f"{speaker}-{k}", f"e-{speaker}", speaker, data, identifier_type_id="audio-recording")
        for speaker, items in recordings.items() for k, data in enumerate(items[:TRAIN_PER_SPEAKER])
    ]
    return out + list(extra)


def context(items, decode_pool, **config) -> MemoryContext:
    return MemoryContext(items, config=SpeakerEngine.info.validate_config(config), decode_pool=decode_pool)


@pytest.fixture(scope="module")
def trained(encoder, recordings, decode_pool):
    bad = [
        Entry("corrupt", "e-Ada", "Ada", b"RIFF\x00\x00\x00\x00WAVEfmt garbage" * 10, identifier_type_id="audio-recording"),
        Entry("empty", "e-Ada", "Ada", b"", identifier_type_id="audio-recording"),
        Entry("silent", "e-Ada", "Ada", wav_bytes(np.zeros(32_000, np.float32), 16_000), identifier_type_id="audio-recording"),
        Entry("too-long", "e-Brian", "Brian", wav_bytes(np.zeros(8_000 * 12, np.float32), 8_000),
              identifier_type_id="audio-recording"),
        Entry("huge", "e-Brian", "Brian", wav_bytes(np.zeros(16_000 * 5, np.float32), 16_000) + bytes(200_000),
              identifier_type_id="audio-recording"),
    ]
    ctx = context(entries(recordings, bad), decode_pool, maxAudioSeconds=10.0, maxAudioBytes=300_000)
    engine = SpeakerEngine(encoder)
    artifact = asyncio.run(engine.train(ctx))
    return engine, artifact


def test_training_reports_evaluation_threshold_and_the_skipped(trained, capsys):
    _, artifact = trained
    report = artifact.jsondata
    assert report["entities"] == len(VOICES) and report["identifiers"] == len(VOICES) * TRAIN_PER_SPEAKER
    reasons = {s["identifierId"]: s["reason"] for s in report["skipped"]}
    assert reasons == {"corrupt": "corrupt", "empty": "empty", "silent": "silent", "too-long": "too-long",
                       "huge": "too-large"}
    assert all(s["detail"] for s in report["skipped"])
    evaluation = report["evaluation"]
    assert evaluation["evaluated"] == len(VOICES) * TRAIN_PER_SPEAKER
    assert evaluation["top1"] >= 0.9 and evaluation["speakerMean"]["top1"] >= 0.9
    assert -1 < report["threshold"] < 1 and report["calibration"]["method"] == "balanced-accuracy"
    windows = report["recordings"]["Ada-0"]["windows"]
    assert windows and all(0 <= a < b <= report["recordings"]["Ada-0"]["seconds"] + 1e-6 for a, b in windows)
    with capsys.disabled():
        print(f"\nspeaker LOO top-1 {evaluation['top1']:.3f}, speaker-mean top-1 {evaluation['speakerMean']['top1']:.3f}, "
              f"threshold {report['threshold']:.4f} (TPR {report['calibration']['truePositiveRate']}, "
              f"TNR {report['calibration']['trueNegativeRate']})")


def test_held_out_recordings_are_recognised_in_every_format(trained, recordings, capsys):
    engine, artifact = trained
    right = total = 0
    for s, speaker in enumerate(VOICES):
        for k, data in enumerate(recordings[speaker][TRAIN_PER_SPEAKER:]):
            (result,) = asyncio.run(engine.recognize(artifact.data, [data], top_k=3, threshold=None, execution_provider="cpu"))
            total += 1
            right += bool(result.matches) and result.matches[0].entity_name == speaker
            assert result.windows
    top1 = right / total
    with capsys.disabled():
        print(f"\nspeaker held-out recordings top-1 at the calibrated threshold: {right}/{total} = {top1:.3f}")
    assert top1 >= 0.8
    samples, rate = speak("Chloe", sentence(999), seed=999)
    for fmt in ("wav", "flac", "mp3", "ogg", "m4a"):
        (result,) = asyncio.run(engine.recognize(artifact.data, [encode(samples, rate, fmt)], top_k=1, threshold=-1.0,
                                                 execution_provider="cpu"))
        assert result.matches[0].entity_name == "Chloe", fmt


@pytest.mark.parametrize("blob, reason", [
    (b"", "empty"), (b"not audio at all" * 50, "corrupt"), (wav_bytes(np.zeros(16_000, np.float32), 16_000), "silent"),
    # the limits the model was trained with (maxAudioSeconds 10, maxAudioBytes 300,000) apply when recognizing
    (wav_bytes(np.zeros(8_000 * 12, np.float32), 8_000), "too-long"),
    (wav_bytes(np.zeros(16_000 * 5, np.float32), 16_000) + bytes(200_000), "too-large"),
])
def test_recognising_bad_audio_names_the_reason(trained, blob, reason):
    engine, artifact = trained
    with pytest.raises(EngineError, match=reason):
        asyncio.run(engine.recognize(artifact.data, [blob], top_k=1, threshold=None, execution_provider="cpu"))


def test_nothing_usable_is_nothing_to_train_with_the_reasons(encoder, decode_pool):
    items = [Entry("e", "e-1", "A", b"", identifier_type_id="audio-recording"),
             Entry("c", "e-1", "A", b"junk" * 100, identifier_type_id="audio-recording")]
    with pytest.raises(NothingToTrain, match=r"2 skipped.*empty.*corrupt|2 skipped.*corrupt.*empty"):
        asyncio.run(SpeakerEngine(encoder).train(context(items, decode_pool)))


def test_without_a_model_training_says_what_to_pull(decode_pool):
    with pytest.raises(EngineError, match="models pull speaker-embedding"):
        asyncio.run(SpeakerEngine().train(context([], decode_pool)))


def test_the_registered_model_the_worker_hands_over_is_used_and_checked(encoder, recordings, decode_pool):
    from engines.interface import EmbeddingModel

    manifest = {"input": {"name": "mels", "layout": "NTC", "frames": 160, "mels": 40}, "output": {"dimension": 256}}
    ctx = context(entries({k: v[:2] for k, v in list(recordings.items())[:2]}), decode_pool)
    ctx.embedding_model = EmbeddingModel("speaker-embedding@1", "v1", encoder, manifest)
    artifact = asyncio.run(SpeakerEngine().train(ctx))  # no encoder of its own: the registered one
    assert artifact.jsondata["backbone"]["name"] == "speaker-embedding@1"
    ctx.embedding_model = EmbeddingModel("face-embedding@1", "v2", encoder, {"input": {"layout": "NHWC"}})
    with pytest.raises(EngineError, match="face-embedding@1 is not a speaker encoder"):
        asyncio.run(SpeakerEngine(encoder).train(ctx))


def test_the_entry_point_names_the_speaker_engine():
    import tomllib
    from pathlib import Path

    from engines.registry import load_spec

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    spec = project["project"]["entry-points"]["engineshed.engines"]["speaker"]
    engine = load_spec(spec)
    assert engine.info.id == "engineshed-speaker" and engine.info.identifier_type_ids == ("audio-recording",)
    assert "people" in engine.info.library_type_ids and "speakers" in engine.info.library_type_ids
