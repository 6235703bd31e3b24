"""The speaker engine: voiced windows, mel pieces and the GE2E encoder, matched against a gallery (engine.py)."""
