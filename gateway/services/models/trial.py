"""Trial inference of model versions: the bounded process it runs in (workers lease trials: gateway/worker/trials.py).

A version registered through the API is stored as ``validating`` after its static checks; a worker
leases it (``model_versions`` is its own small queue, claimed with ``FOR UPDATE SKIP LOCKED`` like tasks,
so trials never appear among a user's jobs), runs ``engines.model_trial`` in a child process under a
wall-clock timeout and an address-space limit, and records ``ready`` with the measured throughput and
provider, or ``failed`` with the reason. The gateway never runs a model.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.queries import jobs as job_q

log = logging.getLogger(__name__)

TRIAL_BATCH = 32
MAX_TRIAL_ATTEMPTS = 3  # a trial whose worker died this many times fails for good
LEASE_SLACK_SECONDS = 30.0


@dataclass
class TrialResult:
    ok: bool
    error: str | None = None
    throughput: float | None = None
    batch: int | None = None
    provider: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def _memory_bound(settings: Any) -> int | None:
    """RLIMIT_AS for the child, or None where CUDA runs (its drivers reserve far more address space than
    they use, so an address-space bound would refuse every GPU session; the timeout still holds)."""
    if settings.onnx_provider == "cpu":
        return settings.model_trial_memory_bytes
    from engines.runtime import cuda_usable

    return None if cuda_usable() else settings.model_trial_memory_bytes


async def run_trial(settings: Any, onnx_bytes: bytes, manifest: dict[str, Any], application: str) -> TrialResult:
    """Run the model on random pixels in a child process; never raises for the model's own faults."""
    timeout = settings.model_trial_seconds
    memory = _memory_bound(settings)
    with tempfile.TemporaryDirectory(prefix="engineshed-trial-") as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(onnx_bytes)
        request = {"model_path": str(path), "manifest": manifest, "application": application,
                   "provider": settings.onnx_provider, "batch": TRIAL_BATCH, "memory_bytes": memory}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "engines.model_trial",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(json.dumps(request).encode()), timeout)
        except asyncio.TimeoutError:
            return TrialResult(False, f"trial inference took longer than {timeout:g} s and was stopped")
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    line = out.decode("utf-8", "replace").strip().splitlines()[-1:] if out else []
    try:
        reply = json.loads(line[0]) if line else None
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        log.warning("model trial exited %s without a result: %s", proc.returncode, err.decode("utf-8", "replace")[-2000:])
        if memory is not None and (proc.returncode or 0) != 0:
            return TrialResult(False, f"trial inference stopped (exit {proc.returncode}) without a result; it may have "
                                      f"passed its memory bound of {memory} bytes")
        return TrialResult(False, f"trial inference stopped (exit {proc.returncode}) without a result")
    if not reply.get("ok"):
        message = str(reply.get("error") or "trial inference failed").replace(str(path), "the model")
        return TrialResult(False, message[:2000])
    return TrialResult(
        True, throughput=float(reply["throughput"]), batch=int(reply["batch"]), provider=str(reply["provider"]),
        details={"trialOutputs": reply.get("outputs")},
    )


async def wake_workers(conn: Any) -> None:
    await job_q.notify(conn, job_q.WAKE_CHANNEL, "model-trial")
