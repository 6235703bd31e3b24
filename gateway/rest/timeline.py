"""``GET /v3/jobs/{jobId}/timeline``: who appears and who speaks, when, in a media job, drawn for a person.

The answer is one self-contained page (``?format=svg``: the image alone) that works offline: inline SVG and CSS,
face thumbnails as ``data:`` URIs, no script, font or stylesheet from anywhere (the Content-Security-Policy header
says so to the browser too). One lane per person or voice (recognized names first, then unknowns), one bar per
segment with its start and end in a tooltip, and a time axis. Entity names are user data: every string is
escaped, and characters XML cannot hold are replaced.

A job may hold many thousands of segments: the page reads them a page at a time and draws at most
``MAX_SEGMENTS`` of them (and ``MAX_LANES`` lanes), saying so on the page; ``?start=&stop=`` (seconds) draws a
window of the media, ``?kind=face|speaker`` one kind.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from gateway.errors import InvalidInput
from gateway.rest.common import RestEndpoint, RestRequest
from gateway.services.queue import jobs as job_service
from gateway.services.recognition import media as media_service

if TYPE_CHECKING:
    from storage.rows import SegmentRow

MAX_SEGMENTS = 2000  # bars one answer draws: a browser stays responsive, the page stays under a few MB
MAX_LANES = 60  # people and voices one answer draws
READ_PAGE = 500  # segments read per service call
KINDS = ("face", "speaker")
FORMATS = ("html", "svg")

WIDTH = 1100  # the drawing's width in CSS pixels (it scales with the page)
LABEL_WIDTH = 240  # the lane names' column, thumbnail included
LANE_HEIGHT = 32
AXIS_HEIGHT = 34
THUMB = 26
COLORS = {"face": "#2f6fca", "speaker": "#c8641e"}
POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
NICE_STEPS = (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)

# XML 1.0 holds no C0 control character but tab, newline and carriage return, no lone surrogate and no U+FFFE/FFFF,
# escaped or not: a name holding one would make the SVG unreadable, so it is shown as U+FFFD.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def text(value: object) -> str:
    """A value as escaped XML/HTML text, safe in element content and in quoted attributes."""
    return html.escape(_NOT_XML.sub("\ufffd", str(value)), quote=True)


def clock(seconds: float) -> str:
    """``75.25`` -> ``1:15.2``; ``3725`` -> ``1:02:05.0``."""
    seconds = max(0.0, seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours >= 1:
        return f"{int(hours)}:{int(minutes):02d}:{secs:04.1f}"
    return f"{int(minutes)}:{secs:04.1f}"


@dataclass
class Lane:
    """One person (``face``) or voice (``speaker``): their segments, and the one whose thumbnail stands for them."""

    kind: str
    name: str
    recognized: bool
    entity_id: str | None
    segments: list[Any] = field(default_factory=list)
    best: Any = None  # the most confident segment with a thumbnail

    @property
    def seconds(self) -> float:
        return sum(max(0.0, s.end_s - s.start_s) for s in self.segments)


def lanes_of(rows: Sequence[SegmentRow]) -> list[Lane]:
    """The segments grouped by who: one lane per recognized entity and per unknown label, of each kind;
    recognized people first (by name), then unknowns (by label), faces before voices."""
    lanes: dict[tuple[str, str], Lane] = {}
    for row in rows:
        recognized = row.entity_id is not None
        key = (row.kind, str(row.entity_id) if recognized else row.label)
        lane = lanes.get(key)
        if lane is None:
            name = (row.entity_name or str(row.entity_id)) if recognized else row.label.replace("-", " ").strip()
            lane = lanes[key] = Lane(row.kind, name, recognized, str(row.entity_id) if recognized else None)
        lane.segments.append(row)
        if row.has_thumbnail and (lane.best is None or row.confidence > lane.best.confidence):
            lane.best = row
    return sorted(lanes.values(), key=lambda lane: (not lane.recognized, KINDS.index(lane.kind) if lane.kind in KINDS
                                                    else len(KINDS), lane.name.casefold(), lane.entity_id or ""))


def tick_step(span: float) -> float:
    """A round step giving at most 12 ticks over ``span`` seconds."""
    for step in NICE_STEPS:
        if span / step <= 12:
            return step
    return math.ceil(span / 12 / 3600) * 3600


def svg(lanes: Sequence[Lane], window: tuple[float, float], thumbnails: dict[int, bytes], *, title: str) -> str:
    """The timeline image: ``window`` is the (start, end) seconds the axis spans; ``thumbnails`` JPEG bytes by lane
    index."""
    t0, t1 = window
    span = max(t1 - t0, 1e-6)
    plot = WIDTH - LABEL_WIDTH - 36  # room for the last tick's label
    height = AXIS_HEIGHT + LANE_HEIGHT * max(1, len(lanes)) + 8

    def x(seconds: float) -> float:
        return LABEL_WIDTH + (min(max(seconds, t0), t1) - t0) / span * plot

    out = [(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
            f'role="img" aria-label="{text(title)}" font-family="system-ui, sans-serif" font-size="12">'),
           f"<title>{text(title)}</title>",
           f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>']
    step = tick_step(span)
    first = math.ceil(t0 / step) * step
    # Counted, not added up: past 2**53 seconds a float step no longer moves a tick, and a loop would never end.
    for n in range(int(min(13, (t1 - first) // step + 1)) if t1 >= first else 0):
        tick = first + n * step
        px = x(tick)
        out.append(f'<line x1="{px:.1f}" y1="{AXIS_HEIGHT - 6}" x2="{px:.1f}" y2="{height - 4}" stroke="#e3e3e3"/>')
        out.append(f'<text x="{px:.1f}" y="{AXIS_HEIGHT - 12}" text-anchor="middle" fill="#555">{text(clock(tick))}</text>')
    if not lanes:
        out.append(f'<text x="{LABEL_WIDTH}" y="{AXIS_HEIGHT + 20}" fill="#777">no one seen or heard here</text>')
    for index, lane in enumerate(lanes):
        top = AXIS_HEIGHT + index * LANE_HEIGHT
        if index % 2:
            out.append(f'<rect x="0" y="{top}" width="{WIDTH}" height="{LANE_HEIGHT}" fill="#f6f7f9"/>')
        label_x = 6
        jpeg = thumbnails.get(index)
        if jpeg is not None:
            uri = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
            out.append(f'<image x="6" y="{top + (LANE_HEIGHT - THUMB) / 2:.1f}" width="{THUMB}" height="{THUMB}" '
                       f'href="{uri}" preserveAspectRatio="xMidYMid slice"><title>{text(lane.name)}</title></image>')
            label_x += THUMB + 6
        kind = "face" if lane.kind == "face" else "voice"
        style = "" if lane.recognized else ' font-style="italic" fill="#666"'
        out.append(f'<text x="{label_x}" y="{top + LANE_HEIGHT / 2 + 4:.1f}"{style}>{text(_cut(lane.name, 26))} '
                   f'<tspan fill="#999">({kind})</tspan><title>{text(lane.name)}</title></text>')
        color = COLORS.get(lane.kind, "#777")
        opacity = "0.9" if lane.recognized else "0.5"
        for row in lane.segments:
            left, right = x(row.start_s), x(row.end_s)
            tip = (f"{lane.name} ({kind}): {clock(row.start_s)}\u2013{clock(row.end_s)}, "
                   f"confidence {row.confidence:.2f}")
            out.append(f'<rect x="{left:.1f}" y="{top + 6}" width="{max(right - left, 1.5):.1f}" height="{LANE_HEIGHT - 12}" '
                       f'rx="2" fill="{color}" fill-opacity="{opacity}"><title>{text(tip)}</title></rect>')
    out.append("</svg>")
    return "\n".join(out)


def _cut(name: str, size: int) -> str:
    return name if len(name) <= size else name[: size - 1] + "\u2026"


def page(title: str, facts: Sequence[str], notes: Sequence[str], image: str, lanes: Sequence[Lane]) -> str:
    """The whole HTML page: a heading, what the job is, any notes (a capped drawing says so), the image, and a
    table of who appears how long."""
    rows = "\n".join(
        f"<tr><td>{text(lane.name)}</td><td>{'face' if lane.kind == 'face' else 'voice'}</td>"
        f"<td>{'yes' if lane.recognized else 'unknown'}</td><td>{len(lane.segments)}</td>"
        f"<td>{text(clock(lane.seconds))}</td></tr>"
        for lane in lanes
    )
    facts_html = " \u00b7 ".join(text(f) for f in facts)
    notes_html = "".join(f'<p class="note">{text(n)}</p>' for n in notes)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{text(title)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }}
h1 {{ font-size: 1.3em; margin: 0 0 .3em; }}
.facts {{ color: #555; margin: 0 0 .8em; }}
.note {{ background: #fff6d6; border: 1px solid #e8d58a; padding: .4em .7em; margin: .5em 0; }}
.timeline {{ overflow-x: auto; border: 1px solid #ddd; }}
.timeline svg {{ max-width: 100%; height: auto; display: block; }}
table {{ border-collapse: collapse; margin-top: 1em; }}
td, th {{ border-bottom: 1px solid #eee; padding: .25em .8em; text-align: left; }}
.legend span {{ display: inline-block; width: 1em; height: .8em; margin: 0 .3em 0 1em; vertical-align: middle; }}
</style>
</head>
<body>
<h1>{text(title)}</h1>
<p class="facts">{facts_html}</p>
{notes_html}
<p class="legend"><span style="background:{COLORS['face']}"></span>face<span style="background:{COLORS['speaker']}"></span>voice
<span style="background:#999;opacity:.5"></span>unknown (not in the library)</p>
<div class="timeline">
{image}
</div>
<table>
<thead><tr><th>who</th><th>kind</th><th>recognized</th><th>segments</th><th>time</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
</body>
</html>
"""


def _seconds(req: RestRequest, name: str) -> float | None:
    raw = req.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(f"query parameter {name} must be a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise InvalidInput(f"query parameter {name} must be a number of seconds, 0 or more")
    return value


def _choice(req: RestRequest, name: str, allowed: Sequence[str], default: str | None) -> str | None:
    raw = req.query_params.get(name)
    if raw is None or raw == "":
        return default
    if raw not in allowed:
        raise InvalidInput(f"query parameter {name} must be one of {', '.join(allowed)}")
    return raw


def _duration(tasks: Sequence[Any]) -> float | None:
    """The media's length, from the job's completed media tasks (null while none has completed)."""
    found = [float(t.output["media"]["duration"]) for t in tasks
             if isinstance(t.output, dict) and isinstance(t.output.get("media"), dict)
             and isinstance(t.output["media"].get("duration"), (int, float))]
    return max(found) if found else None


async def timeline(req: RestRequest) -> Response:
    fmt = _choice(req, "format", FORMATS, "html")
    kind = _choice(req, "kind", KINDS, None)
    start, stop = _seconds(req, "start"), _seconds(req, "stop")
    if start is not None and stop is not None and stop <= start:
        raise InvalidInput("query parameter stop must be after start")
    res, principal = req.resources, req.principal
    job = await job_service.get(res, principal, req.path_params["job_id"])  # not_found first: nothing else leaks
    duration = _duration(await job_service.results(res, principal, job.id))
    rows: list[Any] = []
    total = 0
    while len(rows) < MAX_SEGMENTS:
        want = min(READ_PAGE, MAX_SEGMENTS - len(rows))
        batch, total = await media_service.segments(res, principal, job_id=job.id, kind=kind, start=start, stop=stop,
                                                    offset=len(rows), limit=want)
        rows.extend(batch)
        if len(batch) < want:
            break
    lanes = lanes_of(rows)
    notes = []
    if total > len(rows):
        notes.append(f"Showing the first {len(rows)} of {total} segments: add ?start=&stop= (seconds) to draw a "
                     "later part of the media.")
    if len(lanes) > MAX_LANES:
        notes.append(f"Showing {MAX_LANES} of {len(lanes)} people and voices (recognized ones first).")
        lanes = lanes[:MAX_LANES]
    end = stop if stop is not None else max([duration or 0.0, *(r.end_s for r in rows)]) or 1.0
    window = (start or 0.0, max(end, (start or 0.0) + 1.0))
    thumbnails: dict[int, bytes] = {}
    for index, lane in enumerate(lanes):
        if lane.best is not None:
            jpeg = await media_service.thumbnail(res, principal, lane.best.task_id, lane.best.seq)
            if jpeg is not None and jpeg[:2] == b"\xff\xd8":  # only a JPEG is declared as one
                thumbnails[index] = jpeg
    title = f"Who appears and who speaks: job {job.id}"
    image = svg(lanes, window, thumbnails, title=title)
    headers = {"Content-Security-Policy": POLICY, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
    if fmt == "svg":
        return Response('<?xml version="1.0" encoding="UTF-8"?>\n' + image, media_type="image/svg+xml", headers=headers)
    recognized = sum(1 for lane in lanes if lane.recognized)
    facts = [f"status {job.status}", f"{len(rows)} segments" + (f" of {total}" if total > len(rows) else ""),
             f"{recognized} recognized, {len(lanes) - recognized} unknown",
             f"media {clock(duration)}" if duration is not None else "media length not known yet",
             f"{clock(window[0])}\u2013{clock(window[1])} drawn"]
    body = page(title, facts, notes, image, lanes)
    return Response(body, media_type="text/html; charset=utf-8", headers=headers)


endpoint = RestEndpoint({"GET": timeline})
