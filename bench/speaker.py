"""Scenario 9: the speaker engine, utterances/s through the API against the GE2E encoder's raw ceiling.

The recordings are spoken beforehand by espeak-ng (sampledata/speech.py: distinct voices, a different
sentence each, noise added), uploaded as ``audio-recording`` WAV identifiers to a people library, and trained
by the worker with the speaker engine. The raw ceiling is the same encoder, same provider, on the already
computed mel pieces of the same recordings (what the engine's inference stage alone could do); the features
ceiling is decode + resample + VAD + mel in one process of the bench.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.client import Client
from bench.scenarios import CREATE_ENTITY, CREATE_LIBRARY, bounded, e2e_over_raw, start_training, wait_task, TASK_FULL, MODEL
from bench.stack import BenchError

ENGINE = "test-speaker"  # the speaker engine with the cached, converted GE2E (sampledata/speaker_engine.py)
EXTRA_ENGINES = "sampledata.speaker_engine:TestSpeakerEngine"


def make_recordings(speakers: int, per_speaker: int) -> list[tuple[int, bytes]]:
    from sampledata.speech import ESPEAK, VOICES, sentence, speak, wav_bytes

    if ESPEAK is None:
        raise BenchError("the speaker scenario needs espeak-ng (apt-get install -y espeak-ng)")
    names = list(VOICES)[:speakers]
    out = []
    for s, name in enumerate(names):
        for k in range(per_speaker):
            samples, rate = speak(name, sentence(7000 + 100 * s + k), seed=7000 + 100 * s + k)
            out.append((s, wav_bytes(samples, rate)))
    return out


def raw_ceiling(blobs: list[bytes], provider: str | None, repeats: int = 3) -> dict[str, Any]:
    from engines.speaker.audio import utterance_features
    from engines.runtime import CUDA, get_runner
    from engines.speaker.engine import embed_utterance
    from sampledata.speaker import encoder_bytes

    runner = get_runner(encoder_bytes(), "cuda" if provider == CUDA else "cpu")
    t = time.perf_counter()
    pieces = [utterance_features(blob)[0] for blob in blobs]
    features_seconds = time.perf_counter() - t
    pieces = [p for p in pieces if p is not None]
    embed_utterance(runner, pieces[0])  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for p in pieces:
            embed_utterance(runner, p)
        times.append(time.perf_counter() - t)
    best = sorted(times)[len(times) // 2]
    return {
        "utterances": len(pieces), "pieces": int(sum(len(p) for p in pieces)), "provider": runner.provider,
        "median_seconds": round(best, 4), "utterances_per_s": round(len(pieces) / best, 2),
        "features_single_process_per_s": round(len(blobs) / features_seconds, 2),
    }


async def speaker(client: Client, speakers: int, per_speaker: int, concurrency: int, timeout: float) -> dict[str, Any]:
    recordings = make_recordings(speakers, per_speaker)
    seconds = sum((len(b) - 44) / 2 / 22050 for _, b in recordings)
    library = (await client.data(CREATE_LIBRARY, n="speakers"))["createLibrary"]["id"]
    entities = [(await client.data(CREATE_ENTITY, l=library, n=f"speaker-{s}"))["createEntity"]["id"] for s in range(speakers)]

    async def upload(item: tuple[int, bytes]) -> None:
        s, data = item
        (await client.upload_form(
            f'mutation {{ createEntityIdentifier(input: {{entityId: "{entities[s]}", identifierTypeId: "audio-recording"}}) {{ id }} }}',
            data, "audio/wav", filename="x.wav",
        )).ok()

    await bounded(recordings, concurrency, upload)
    # The raw ceiling just before and just after the training, the ratio against their mean: on the shared
    # machine the speed moves by 2-4x within minutes (as the pulled-model figures do).
    blobs = [b for _, b in recordings]
    before = await asyncio.to_thread(raw_ceiling, blobs, None)
    model_id, task_id, t0 = await start_training(client, library, engine=ENGINE)
    status, t_done = await wait_task(client, task_id, interval=0.05, timeout=timeout)
    task = (await client.data(TASK_FULL, id=task_id))["task"]
    if status != "complete":
        raise BenchError(f"speaker training ended {status}: {task.get('failureReason')} {task.get('failureMessage')}")
    jsondata = (await client.data(MODEL, id=model_id))["libraryEngineModel"]["jsondata"] or {}
    n = int(jsondata.get("identifiers") or 0)
    e2e = t_done - t0
    after = await asyncio.to_thread(raw_ceiling, blobs, jsondata.get("provider"))
    raw = dict(after, utterances_per_s=round((before["utterances_per_s"] + after["utterances_per_s"]) / 2, 2),
               before_per_s=before["utterances_per_s"], after_per_s=after["utterances_per_s"])
    e2e_per_s = n / e2e if e2e else 0.0
    task_per_s = n / float(task["duration"]) if task["duration"] else 0.0
    return {
        "speakers": speakers, "recordings": len(recordings), "trained": n,
        "audio_seconds": round(seconds, 1), "mean_recording_seconds": round(seconds / len(recordings), 2),
        "client_create_to_complete_s": round(e2e, 3), "task_start_to_complete_s": round(float(task["duration"]), 3),
        "e2e_utterances_per_s": round(e2e_per_s, 2), "task_utterances_per_s": round(task_per_s, 2),
        "raw": raw, "e2e_over_raw": e2e_over_raw(e2e_per_s, raw["utterances_per_s"]),
        "task_over_raw": e2e_over_raw(task_per_s, raw["utterances_per_s"]),
        "timings": jsondata.get("timings"), "provider": jsondata.get("provider"),
        "evaluation_top1": (jsondata.get("evaluation") or {}).get("top1"), "threshold": jsondata.get("threshold"),
        "rtf_e2e": round(seconds / e2e, 2) if e2e else None,  # seconds of audio trained per wall second
    }


def rows(s: dict[str, Any], fmt: Any) -> list[str]:
    raw = s["raw"]
    return [
        f"| 9 | speaker training e2e, {s['trained']} recordings of {s['speakers']} espeak-ng voices (~{fmt(s['mean_recording_seconds'], 1)} s WAV), createJob → complete | {fmt(s['client_create_to_complete_s'], 2)} s = {fmt(s['e2e_utterances_per_s'])} utterances/s |",
        f"| 9 | speaker training, task started → complete | {fmt(s['task_start_to_complete_s'], 2)} s = {fmt(s['task_utterances_per_s'])} utterances/s |",
        f"| 9 | raw ceiling: GE2E on the computed mel pieces ({raw['pieces']} pieces), {raw['provider']}, mean of just before / just after | {fmt(raw['utterances_per_s'])} utterances/s ({fmt(raw['before_per_s'])} / {fmt(raw['after_per_s'])}) |",
        f"| 9 | **speaker e2e / raw** (task / raw) | **{fmt(s['e2e_over_raw'], 3)}** ({fmt(s['task_over_raw'], 3)}) |",
        f"| 9 | (reference) decode + VAD + mel, 1 process in the bench | {fmt(raw['features_single_process_per_s'])} recordings/s |",
        f"| 9 | LOO top-1 / threshold of the trained model | {fmt(s['evaluation_top1'], 3)} / {fmt(s['threshold'], 4)} |",
    ]
