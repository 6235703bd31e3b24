"""``engineshed recognize video.mp4 --library L`` on the real stack: the progress bar, the segment table, --json,
--timeline, what keeps today's behaviour (an image), bad input, a video that fails, and Ctrl-C cancelling the job.
The engine is the test media engine (tests/support/media_engine.py): one face segment per media second."""

from __future__ import annotations

import asyncio
import io
import signal
import subprocess
import sys
import wave
from collections.abc import Iterator
from typing import Any

import pytest

from engineshed.cli.media import clock, is_media, sniff_video
from engineshed.client import AsyncClient, Client
from tests.client.helpers import cli, cli_env, cli_json, png
from tests.conftest import ROOT, Gateway, Org, Process, Stack, make_org, start_gateway
from tests.engines.api_helpers import start_worker_process
from tests.support.media_engine import expected_labels, video
from tests.support.media_stack import WORKER_ENV, people_library, train_media_model
from tests.support.waits import wait_for, wait_job, wait_worker_ready

# ---- which files are media, without a server ------------------------------------------------------------------------


def _wav(seconds: float, rate: int = 8000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * int(seconds * rate))
    return out.getvalue()


def test_videos_and_long_recordings_are_media_and_images_and_short_recordings_are_not(tmp_path):
    cases = {
        "clip.mp4": (video(1), True),
        "renamed.bin": (video(1), True),  # by its bytes, whatever its name
        "still.png": (png(1), False),
        "photo.heic": (b"\x00\x00\x00\x18ftypheic" + b"\x00" * 40, False),  # MP4's box, an image's brand
        "clip.webm": (b"\x1a\x45\xdf\xa3" + b"\x00" * 40, True),
        "short.wav": (_wav(3), False),
        "long.wav": (_wav(61), True),
        "voice.mp3": (b"ID3" + b"\x00" * 100, False),
    }
    for name, (data, media) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        assert is_media(path) is media, name
    assert is_media(tmp_path / "still.png", forced=True)
    assert not sniff_video(b"") and sniff_video(b"RIFF\x00\x00\x00\x00AVI LIST")
    assert [clock(s) for s in (0, 75.25, 3725)] == ["0:00.00", "1:15.25", "1:02:05.00"]


# ---- on the stack -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def media_gateway(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway({**stack.env, **WORKER_ENV}, tmp_path_factory.mktemp("cli-media-gw"), "cli-media-gateway")
    yield gw
    gw.process.stop()


@pytest.fixture(scope="module")
def worker(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    process = start_worker_process(stack, tmp_path_factory.mktemp("cli-media-wk"), "cli-media-worker", **WORKER_ENV)
    wait_worker_ready(process)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def org(stack: Stack, media_gateway: Gateway) -> Iterator[Org]:
    o = make_org(stack, media_gateway, "cli-media")
    yield o
    o.close()


@pytest.fixture(scope="module")
def library(org: Org, worker: Process) -> dict[str, Any]:
    library_id, entities = people_library(org, ("ada", "bob"))
    model_id = train_media_model(org, library_id)
    return {"id": library_id, "entities": entities, "model": model_id}


def test_recognize_a_video_prints_a_progress_bar_and_the_segment_table(org, library, tmp_path):
    clip = tmp_path / "meeting.mp4"
    clip.write_bytes(video(5))
    done = cli(org, "recognize", str(clip), "--library", "media", "--frame-interval", "0.5")
    assert done.returncode == 0, done.stderr
    assert "recognizing meeting.mp4" in done.stderr and "100%" in done.stderr
    assert "meeting.mp4: 5 segment(s)" in done.stdout
    lines = [line for line in done.stdout.splitlines() if "0:0" in line]
    assert len(lines) == 5
    names = {v: k for k, v in library["entities"].items()}
    for line, second, label in zip(lines, range(5), expected_labels(sorted(library["entities"].values()), 5), strict=True):
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        assert cells[:2] == [clock(second), clock(second + 1)], line
        assert cells[2] == names.get(label, f"({label})"), line
        assert cells[4] == "face" and float(cells[3]) == pytest.approx(0.9 if label in names else 0.2)


def test_json_and_the_saved_timeline(org, library, tmp_path):
    clip = tmp_path / "clip.mov"
    clip.write_bytes(video(4))
    page = tmp_path / "out" / "timeline.html"
    page.parent.mkdir()
    answer = cli_json(org, "recognize", str(clip), "--model", library["model"], "--timeline", str(page))
    assert answer["job"]["status"] == "complete" and answer["exitStatus"] == 0
    segments = answer["segments"]
    assert [s["startSeconds"] for s in segments] == [0.0, 1.0, 2.0, 3.0]
    assert [s["entityId"] or s["label"] for s in segments] == expected_labels(sorted(library["entities"].values()), 4)
    text = page.read_text()
    assert text.startswith("<!doctype html>") and "<svg" in text and "ada" in text and "unknown face 1" in text
    assert answer["job"]["id"] in text
    # The client reads the same page, and pages through the segments, sync and async alike.
    with Client(org.gateway.url, org.token) as client:
        assert client.timeline(answer["job"]["id"], format="svg").startswith("<?xml")
        assert client.segments(answer["job"]["id"], page_size=3) == segments

    async def read() -> tuple[str, list[dict[str, Any]]]:
        async with AsyncClient(org.gateway.url, org.token) as client:
            return await client.timeline(answer["job"]["id"]), await client.segments(answer["job"]["id"], page_size=2)

    html, again = asyncio.run(read())
    assert "<svg" in html and again == segments


def test_an_image_keeps_the_one_answer_recognition_and_media_options_need_media(org, library, tmp_path):
    photo = tmp_path / "face.png"
    photo.write_bytes(png(7))
    answer = cli_json(org, "recognize", str(photo), "--library", "media")
    assert "matches" in answer and "segments" not in answer  # recognize's answer, as before
    refused = cli(org, "recognize", str(photo), "--library", "media", "--speakers", "2")
    assert refused.returncode == 2 and "--speakers" in refused.stderr
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(video(1))
    wrong = cli(org, "recognize", str(clip), "--model-id", "some-tagger")
    assert wrong.returncode == 2 and "--library or --model" in wrong.stderr
    bad = cli(org, "recognize", str(clip), "--library", "media", "--frame-interval", "0")
    assert bad.returncode == 2 and "frameInterval" in bad.stderr and "Traceback" not in bad.stderr
    missing = cli(org, "recognize", str(clip), "--library", "no-such-library")
    assert missing.returncode == 6
    nowhere = cli(org, "recognize", str(clip), "--library", "media", "--timeline", str(tmp_path / "no" / "t.html"))
    assert nowhere.returncode == 2 and "not a directory" in nowhere.stderr


def test_a_video_whose_job_fails_exits_1_with_the_reason(org, library, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x01 not a video " * 100)
    done = cli(org, "recognize", str(broken), "--library", "media")
    assert done.returncode == 1 and "failed" in done.stderr and "neither a video nor a recording" in done.stderr
    answer = cli_json(org, "recognize", str(broken), "--library", "media", expect=1)
    assert answer["job"]["status"] == "failed" and answer["segments"] == []


def test_ctrl_c_while_a_video_runs_cancels_its_job(org, library, tmp_path):
    slow = tmp_path / "slow.mp4"
    slow.write_bytes(video(60, pace=1.0))  # a minute of work: running when interrupted
    process = subprocess.Popen([sys.executable, "-m", "engineshed.cli.main", "recognize", str(slow), "--library", "media"],
                               env=cli_env(org), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def running() -> str | None:
            jobs = org.client.query('{ jobs(status: running) { records { id name tasks { records { progress } } } } }').ok()
            found = [j for j in jobs["jobs"]["records"] if j["name"] == "recognizeMedia"
                     and j["tasks"]["records"][0]["progress"] > 0]
            return found[0]["id"] if found else None

        job_id = wait_for(running, timeout=90, what="the media job to make progress")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, (out, err)
    assert f"job {job_id} cancelled" in err
    assert wait_job(org, job_id)["status"] == "cancelled"
