"""Speaker features (engines/speaker/mel.py) against Resemblyzer's librosa output, and the energy VAD on made-up audio."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from engines.speaker import mel

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "models"
sys.path.insert(0, str(FIXTURES))
from speech_pattern import speech_pattern  # noqa: E402


def test_the_numpy_mel_is_librosas():
    ref = np.load(FIXTURES / "ge2e.npz")
    got = mel.mel_spectrogram(speech_pattern())
    assert got.shape == ref["mel"].shape == (201, 40)
    np.testing.assert_allclose(got, ref["mel"], rtol=1e-4, atol=1e-5)


def test_the_filterbank_is_slaney_normalised_triangles():
    bank = mel.mel_filterbank()
    assert bank.shape == (40, 201) and (bank >= 0).all()
    assert (bank.argmax(axis=1)[1:] >= bank.argmax(axis=1)[:-1]).all()  # centres rise with the band


def test_partials_are_resemblyzers_slices():
    assert mel.partial_slices(32_000) == [(0, 160), (77, 237)]
    assert mel.partial_slices(100) == [(0, 160)]  # always one piece, padded
    pieces, slices = mel.utterance_partials(np.zeros(16_000 * 5, np.float32))
    assert pieces.shape == (len(slices), 160, 40)
    steps = {b[0] - a[0] for a, b in zip(slices, slices[1:])}
    assert steps == {77}  # about half a piece: 50 % overlap


def test_the_vad_keeps_the_voice_and_reports_its_windows():
    voice = speech_pattern(1.0)
    silence = np.zeros(16_000, np.float32)
    noise = np.random.default_rng(0).normal(0, 1e-4, 16_000 * 5).astype(np.float32)
    wav = np.concatenate([silence, voice, silence, voice, silence]) + noise[: 16_000 * 5]
    found = mel.voiced_windows(wav)
    assert len(found.windows) == 2
    (a0, a1), (b0, b1) = found.windows
    assert abs(a0 - 1.0) < 0.05 and abs(a1 - 2.0) < 0.05 and abs(b0 - 3.0) < 0.05 and abs(b1 - 4.0) < 0.05
    assert abs(found.seconds - 2.0) < 0.1


def test_silence_and_a_short_clip_have_nothing_voiced():
    assert mel.voiced_windows(np.zeros(16_000, np.float32)).seconds == 0
    assert mel.voiced_windows(np.zeros(10, np.float32)).windows == []
