"""The face engine: detect, gate, align and embed faces; the artifact does all four plus matching (engine.py)."""
