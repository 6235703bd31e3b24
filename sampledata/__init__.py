"""Generated sample media and models for the tests and the benchmarks; not shipped with the product.

Everything here is made on the machine (images, recordings, small ONNX models) or taken from pinned public
packages, so tests and benchmarks share one source of data. Nothing here imports the test tree.
"""
