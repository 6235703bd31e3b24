"""Who speaks when: the speaker engine's recognize_media on a conversation of espeak-ng voices.

The library is trained on separate recordings (other sentences) of five voices; the conversation has three of
them taking turns, silences, one overlapped stretch and a sixth voice the library does not know
(sampledata/conversation.py). Segment boundaries are checked to within one window hop (0.5 s) of the truth,
except where the two voices overlap.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engines.interface import EngineError
from engines.media import UNKNOWN_SPEAKER, MediaEngine, MediaOptions, Segment
from engines.speaker.engine import SpeakerEngine
from sampledata.conversation import (
    UNKNOWN_VOICE,
    Conversation,
    build,
    training_recordings,
)
from sampledata.library import Entry
from sampledata.speech import ESPEAK, wav_bytes
from tests.engines.memory_context import MemoryContext
from tests.support.requirements import need

if ESPEAK is None:
    need("espeak-ng", "espeak-ng is not installed (apt-get install -y espeak-ng)")

LIBRARY = ["Ada", "Brian", "Chloe", "Dmitri", "Esme"]  # Farid (the conversation's unknown) is not in it
HOP = 0.5  # engines/speaker/windows.py: window starts are this far apart
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def artifact(decode_pool) -> bytes:
    from gateway.services.models.pull.catalogue import PullError
    from sampledata.speaker import encoder_bytes

    try:
        encoder = encoder_bytes()
    except PullError as exc:
        need("registry", f"the speaker model is not cached and the registry is unreachable: {exc}")
    items = [Entry(f"{name}-{k}", f"e-{name}", name, data, identifier_type_id="audio-recording")
             for name, blobs in training_recordings(LIBRARY).items() for k, data in enumerate(blobs)]
    ctx = MemoryContext(items, config=SpeakerEngine.info.validate_config({}), decode_pool=decode_pool)
    return asyncio.run(SpeakerEngine(encoder).train(ctx)).data


@pytest.fixture(scope="module")
def conversation() -> Conversation:
    return build()


@pytest.fixture(scope="module")
def files(conversation, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("conversation")
    out = {}
    for name, data in {"wav": conversation.wav(), "ogg": conversation.encoded("ogg"), "mp3": conversation.encoded("mp3"),
                       "mp4": conversation.mp4(), "webm": conversation.video("webm"),
                       "silent-mp4": conversation.mp4(with_audio=False)}.items():
        out[name] = folder / f"conversation-{name}.{name.split('-')[-1]}"
        out[name].write_bytes(data)
    return out


def recognize(artifact: bytes, path: Path, pool=None, **options) -> tuple[list[Segment], list[float]]:
    fractions: list[float] = []

    async def progress(fraction: float, message: str | None) -> None:
        fractions.append(fraction)

    async def run() -> list[Segment]:
        return [s async for s in SpeakerEngine().recognize_media(
            artifact, str(path), MediaOptions(**options), execution_provider="cpu", pool=pool, progress=progress)]

    return asyncio.run(run()), fractions


def in_overlap(conversation: Conversation, t: float) -> bool:
    a, b = conversation.overlap
    return a - HOP <= t <= b + HOP


def check_against_truth(conversation: Conversation, segments: list[Segment]) -> None:
    """One segment per turn, the right speaker, boundaries within one hop outside the overlap; the unknown
    voice is one unknown speaker throughout."""
    assert [s.start for s in segments] == sorted(s.start for s in segments)
    assert len(segments) == len(conversation.turns), [(s.start, s.end, s.label) for s in segments]
    unknown_labels = set()
    for turn, segment in zip(conversation.turns, segments, strict=True):
        assert segment.kind == "speaker"
        if turn.speaker == UNKNOWN_VOICE:
            assert segment.label.startswith(UNKNOWN_SPEAKER) and segment.entity_id is None and not segment.matches
            unknown_labels.add(segment.label)
        else:
            assert (segment.label, segment.entity_name) == (f"e-{turn.speaker}", turn.speaker), (turn, segment)
            assert segment.matches[0].entity_id == segment.entity_id and segment.identifier_id.startswith(turn.speaker)
            assert segment.confidence == segment.matches[0].score
        for truth, found in ((turn.start, segment.start), (turn.end, segment.end)):
            if not in_overlap(conversation, truth):
                assert abs(found - truth) <= HOP, (turn, segment)
    assert unknown_labels == {f"{UNKNOWN_SPEAKER}1"}


def test_turns_speakers_and_the_unknown_voice(artifact, conversation, files, decode_pool, capsys):
    assert isinstance(SpeakerEngine(), MediaEngine)
    segments, fractions = recognize(artifact, files["wav"], pool=decode_pool)
    check_against_truth(conversation, segments)
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) >= 3
    worst = max(abs(s.start - t.start) for s, t in zip(segments, conversation.turns, strict=True)
                if not in_overlap(conversation, t.start))
    with capsys.disabled():
        print(f"\ndiarization: {len(segments)} segments, worst start error outside the overlap {worst:.2f} s")


@pytest.mark.parametrize("fmt", ["ogg", "mp3", "mp4", "webm"])
def test_compressed_audio_and_a_videos_audio_track(artifact, conversation, files, fmt):
    segments, _ = recognize(artifact, files[fmt])
    check_against_truth(conversation, segments)


def test_speakers_given_or_found(artifact, files):
    found, _ = recognize(artifact, files["wav"])
    given, _ = recognize(artifact, files["wav"], speakers=4)
    assert len({s.label for s in found}) == 4
    assert [(s.label, s.start, s.end) for s in given] == [(s.label, s.start, s.end) for s in found]
    fewer, _ = recognize(artifact, files["wav"], speakers=2)
    assert len({s.label for s in fewer}) <= 2


def test_bad_input_is_named(artifact, conversation, files, tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("these are not the recordings you are looking for\n" * 100)
    with pytest.raises(EngineError, match="not media"):
        recognize(artifact, text)
    with pytest.raises(EngineError, match="no audio stream: the file is a video without sound"):
        recognize(artifact, files["silent-mp4"])
    with pytest.raises(EngineError, match="too long: 9[0-9.]+ s of audio is over the 60 s limit"):
        recognize(artifact, files["wav"], max_seconds=60.0)
    for fmt, data in (("wav", files["wav"].read_bytes()), ("mp3", files["mp3"].read_bytes()),
                      ("flac", conversation.encoded("flac"))):
        truncated = tmp_path / f"truncated.{fmt}"  # an upload cut off at a third
        truncated.write_bytes(data[: len(data) // 3])
        with pytest.raises(EngineError, match="truncated"):
            recognize(artifact, truncated)
    cut_mp4 = tmp_path / "cut.mp4"  # cut before its index (moov): no stream can be found
    cut_mp4.write_bytes(files["mp4"].read_bytes()[:-2000])
    with pytest.raises(EngineError, match="not media: .*truncated or corrupt"):
        recognize(artifact, cut_mp4)
    with pytest.raises(EngineError, match="not a speaker artifact|not an engineshed artifact|not a readable ONNX"):
        recognize(b"not a model", files["wav"])
    with pytest.raises(EngineError, match="speakers must be at least 1, not 0"):
        recognize(artifact, files["wav"], speakers=0)
    with pytest.raises(EngineError, match="top_k must be at least 1"):
        recognize(artifact, files["wav"], top_k=0)


def test_silence_and_noise_only_give_no_segments(artifact, tmp_path):
    rng = np.random.default_rng(1)
    for name, samples in {"digital": np.zeros(16_000 * 40, np.float32),
                          "room": rng.normal(0, 0.004, 16_000 * 70).astype(np.float32)}.items():
        path = tmp_path / f"{name}.wav"
        path.write_bytes(wav_bytes(samples, 16_000))
        segments, fractions = recognize(artifact, path)
        assert segments == [] and fractions[-1] == 1.0, name


def test_a_failing_progress_callback_stops_the_run(artifact, files):
    class Cancelled(Exception):
        pass

    async def progress(fraction: float, message: str | None) -> None:
        raise Cancelled

    async def run() -> None:
        async for _ in SpeakerEngine().recognize_media(artifact, str(files["wav"]), MediaOptions(),
                                                       execution_provider="cpu", pool=None, progress=progress):
            pass

    with pytest.raises(Cancelled):
        asyncio.run(run())


MEASURE = """
import asyncio, json, sys
from engines.media import MediaOptions
from engines.speaker.engine import SpeakerEngine
artifact = open(sys.argv[1], "rb").read()
async def progress(fraction, message): pass
async def run():
    return [s async for s in SpeakerEngine().recognize_media(artifact, sys.argv[2], MediaOptions(),
            execution_provider="cpu", pool=None, progress=progress)]
segments = asyncio.run(run())
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so it would report pytest's own peak.
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"rss": peak * 1024,
                  "segments": len(segments), "labels": sorted({s.label for s in segments})}))
"""


def measure(artifact_path: Path, media: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", MEASURE, str(artifact_path), str(media)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_long_recording_in_bounded_memory(artifact, conversation, tmp_path, capsys):
    """An hour (the conversation's first five turns, then four minutes of room noise, over and over) peaks no
    higher than a quarter of it, within 50 MB, where the extra 45 minutes decoded whole would be 170 MB
    (16 kHz float32). Both are past the first minutes, in which the allocator and the encoder's session reach
    their working size. The quiet keeps the test cheap (decoded and VAD-ed, not embedded); the overlap is left
    out because a dozen identical copies of it make a voice of their own (the mix), where one copy does not."""
    import wave

    model = tmp_path / "speaker.onnx"
    model.write_bytes(artifact)
    turns = conversation.samples[: int((conversation.turns[4].end + 0.6) * conversation.rate)]
    quiet = np.random.default_rng(2).normal(0, 0.004, int(240 * conversation.rate)).astype(np.float32)
    pcm = (np.clip(np.concatenate([turns, quiet]), -1, 1) * 32767).astype(np.int16).tobytes()
    tile_seconds = len(pcm) / 2 / conversation.rate
    tiles = int(np.ceil(3600 / tile_seconds))
    for name, copies in (("quarter", int(np.ceil(tiles / 4))), ("hour", tiles)):
        with wave.open(str(tmp_path / f"{name}.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(conversation.rate)
            for _ in range(copies):
                w.writeframes(pcm)
    quarter = measure(model, tmp_path / "quarter.wav")
    hour = measure(model, tmp_path / "hour.wav")
    growth = (hour["rss"] - quarter["rss"]) / 2**20
    with capsys.disabled():
        print(f"\ndiarization memory: {np.ceil(tiles / 4) * tile_seconds / 60:.0f} min peak "
              f"{quarter['rss'] / 2**20:.0f} MiB, {tiles * tile_seconds / 60:.0f} min peak {hour['rss'] / 2**20:.0f} MiB "
              f"(+{growth:.0f} MiB), {hour['segments']} segments")
    assert growth < 50
    assert quarter["labels"] == ["e-Ada", "e-Chloe", "e-Dmitri", f"{UNKNOWN_SPEAKER}1"]
    assert hour["labels"] == quarter["labels"] and hour["segments"] == tiles * 5


def test_many_windows_are_clustered_on_a_sample_into_the_same_voices():
    """Past DIRECT_MAX windows, clustering a sample and assigning the rest finds the voices all windows
    would, and a voice of a few windows is folded into its nearest voice."""
    from engines.speaker.voices import DIRECT_MAX, cluster

    rng = np.random.default_rng(3)
    centres = rng.normal(size=(1, 256)) + 0.9 * rng.normal(size=(4, 256))  # voices at cosine ~0.55
    truth = np.repeat(np.arange(4), [900, 1700, 400, 1000])
    rng.shuffle(truth)
    vectors = centres[truth] + rng.normal(scale=0.67, size=(truth.size, 256))  # windows of a voice at ~0.8
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    assert truth.size > DIRECT_MAX
    for speakers in (None, 4):
        labels = cluster(vectors, speakers)
        assert len(set(labels.tolist())) == 4
        assert all(len(set(labels[truth == t].tolist())) == 1 for t in range(4)), speakers
    stray = rng.normal(size=(1, 256)) + rng.normal(scale=0.3, size=(3, 256))  # three windows of nobody's voice
    stray = stray / np.linalg.norm(stray, axis=1, keepdims=True)
    few = np.concatenate([vectors[:300], stray.astype(np.float32)])
    assert len(set(cluster(few, None).tolist())) == len(set(truth[:300].tolist()))
