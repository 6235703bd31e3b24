"""Configuration options shared by the built-in engines (the training data path and the artifact)."""

from __future__ import annotations

from engines.interface import ConfigOption

__all__ = ["PIPELINE_OPTIONS"]

PIPELINE_OPTIONS: tuple[ConfigOption, ...] = (
    ConfigOption("pageSize", int, 30, "Identifiers read from the library per page.", 1, 1000),
    ConfigOption(
        "fetchConcurrency", int, 32, "Identifier downloads in flight at once (S3 round trips dominate training).", 1, 256
    ),
    ConfigOption("fetchRate", float, 0.0, "Most identifier downloads started per second; 0 = no limit.", 0, 100_000),
    ConfigOption("batchSize", int, 256, "Images per backbone inference batch.", 1, 4096),
    ConfigOption("minSize", int, 0, "Skip images whose shorter side is under this many pixels (before resizing).", 0, 100_000),
    ConfigOption(
        "sharpnessThreshold", float, 0.0, "Skip images whose Laplacian variance is under this; 0 disables.", 0, 1e9
    ),
    ConfigOption("topK", int, 5, "Matches the artifact returns per image at most.", 1, 1000),
    ConfigOption("imageSize", int, 32, "Side in pixels the built-in backbone sees.", 8, 128),
    ConfigOption(
        "modelId", str, "",
        "Registered embedding model to embed with: name, name@3 or name@alias; empty = the system default for "
        "the identifier type (pixel-projection when none is registered).",
    ),
)
