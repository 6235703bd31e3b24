"""`make bench`: end-to-end performance figures for engineshed, measured against the real stack.

Run ``python -m bench.run --help``; see bench/README.md for what every figure means.
"""
