"""The speaker engine with the real GE2E encoder, for gateway and worker subprocesses (ENGINESHED_EXTRA_ENGINES).

In production the worker hands the engine the registered ``speaker-embedding`` model; the test stack registers
no models, so this engine converts the pinned, cached Resemblyzer wheel itself (sampledata/speaker.py). Its id
is ``test-speaker`` so it never clashes with the ``engineshed-speaker`` entry point of a reinstalled checkout.
"""

from __future__ import annotations

import dataclasses
import functools

from engines.speaker.engine import SpeakerEngine


@functools.cache
def _encoder() -> bytes:
    from sampledata.speaker import encoder_bytes

    return encoder_bytes()


class TestSpeakerEngine(SpeakerEngine):
    info = dataclasses.replace(SpeakerEngine.info, id="test-speaker", name="Speaker (GE2E, test fixture)")

    def _encoder(self, ctx):  # noqa: ANN001, ANN202 - loaded at first training, not at gateway start
        return _encoder(), "ge2e"
