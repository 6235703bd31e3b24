"""A machine without CUDA runs every model on the CPU without printing CUDA errors, and each process says once, at
start, which execution provider it uses and why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engines.runtime import cuda_usable
from tests.support.waits import wait_worker_ready

ROOT = Path(__file__).resolve().parents[2]
no_gpu = pytest.mark.skipif(cuda_usable(), reason="this machine has a usable CUDA provider")

SESSION = """
from onnx import TensorProto, helper
from engines.runtime import get_runner, provider_summary
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10).SerializeToString()
runner = get_runner(model, "auto")
print(provider_summary("auto"))
print(runner.provider)
"""


@no_gpu
def test_a_session_on_a_machine_without_cuda_prints_nothing_but_what_it_was_asked():
    done = subprocess.run([sys.executable, "-c", SESSION], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no "[E:onnxruntime…] Failed to load …cuda.so", no "Failed to load libcublasLt"
    summary, provider = done.stdout.strip().splitlines()
    assert summary.startswith("execution provider: CPU (") and "CUDA" in summary
    assert provider == "CPUExecutionProvider"


@no_gpu
def test_a_worker_states_its_provider_once_and_logs_no_cuda_error(start_worker):
    worker = start_worker()
    wait_worker_ready(worker)
    log = worker.output()
    assert log.count("execution provider: CPU") == 1, log[-2000:]
    assert "Failed to load" not in log and "[E:onnxruntime" not in log and "install CUDA" not in log
