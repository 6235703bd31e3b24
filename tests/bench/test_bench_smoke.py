"""`python -m bench.run --quick` end to end: every section present with positive figures (no timing limits)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _positive(value: object, where: str) -> None:
    assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{where} is not a number: {value!r}"
    assert value > 0, f"{where} is not positive: {value!r}"


def test_quick_bench_writes_every_section(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, f"bench failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    assert "e2e / raw" in done.stdout and "upload / S3 PUT ceiling" in done.stdout  # the table was printed
    report = json.loads(out.read_text())

    machine, versions, r = report["machine"], report["versions"], report["results"]
    _positive(machine["cpu_count"], "machine.cpu_count")
    for name in ("python", "onnxruntime", "numpy", "engineshed"):
        assert versions[name], f"versions.{name} missing"
    assert r["provider"]

    t = r["training"]
    _positive(t["identifiers"], "training.identifiers")
    for key in ("e2e_identifiers_per_s", "task_identifiers_per_s", "e2e_over_raw", "task_over_raw"):
        _positive(t[key], f"training.{key}")
    _positive(t["raw"]["identifiers_per_s"], "training.raw.identifiers_per_s")
    _positive(t["s3_get_ceiling"]["identifiers_per_s"], "training.s3_get_ceiling.identifiers_per_s")
    _positive(t["e2e_over_s3_get"], "training.e2e_over_s3_get")
    assert t["s3_get_ceiling"]["objects"] == t["identifiers"]  # the training library's own objects, all read
    _positive(t["upload"]["per_second"], "training.upload.per_second")
    for key in ("fetch", "decode", "inference", "total"):
        _positive(t["full"]["timings"][key], f"training.full.timings.{key}")

    stages = {row["stage"].strip(): row for row in r["breakdown"]}
    _positive(stages["wall: task started → complete"]["seconds"], "breakdown wall")
    for stage in ("embedding pipeline (wall)", "fetch (S3 GET)", "decode/preprocess", "inference (backbone)"):
        _positive(stages[stage]["fraction_of_wall"], f"breakdown {stage}")

    inc = r["incremental"]
    _positive(inc["added"], "incremental.added")
    _positive(inc["incremental_over_full_client"], "incremental.incremental_over_full_client")
    _positive(inc["run"]["embeddings"]["cached"], "incremental embeddings cached")
    assert len(inc["runs_client_s"]) == 3 and inc["run"]["client_create_to_complete_s"] == sorted(inc["runs_client_s"])[1]
    assert inc["run"]["embeddings"]["computed"] == inc["added"]  # only the new identifiers are embedded

    up = r["upload_vs_s3_put"]
    for key in ("api_uploads_per_s", "s3_puts_per_s", "api_over_s3_put", "gateway_cpu_ms_per_upload"):
        _positive(up[key], f"upload_vs_s3_put.{key}")
    assert up["uploads"] == t["identifiers"] and len(up["api_seconds"]) == up["passes"] == 3
    photos = r["upload_vs_s3_put_photos"]  # the same at photo size: one per entity, 512 px
    for key in ("api_uploads_per_s", "s3_puts_per_s", "api_over_s3_put", "gateway_cpu_ms_per_upload"):
        _positive(photos[key], f"upload_vs_s3_put_photos.{key}")
    assert photos["image_size"] == 512 and photos["uploads"] == t["identifiers"] // 5
    assert photos["bytes"] / photos["uploads"] > 20 * up["bytes"] / up["uploads"]

    reads = r["reads"]
    for level in ("1", "32"):
        for key in ("p50_ms", "p95_ms", "per_second"):
            _positive(reads["latency"][level][key], f"reads.latency.{level}.{key}")
    for size in ("5", "30"):
        _positive(reads["sql_per_request"][size]["sql_statements"], f"reads.sql_per_request.{size}")

    gp = r["gateway_processes"]
    assert set(gp["levels"]) == {"1", str(report["parameters"]["gateway_processes"])}
    for level in gp["levels"].values():
        assert level["processes_answering"] == level["processes"]  # every process served
        _positive(level["per_second"], f"gateway_processes.{level['processes']}.per_second")
    _positive(gp["n_over_1"], "gateway_processes.n_over_1")

    dispatch = r["dispatch"]
    _positive(dispatch["client_observed"]["p50_ms"], "dispatch.client_observed.p50_ms")
    _positive(dispatch["client_observed"]["p95_ms"], "dispatch.client_observed.p95_ms")
    assert dispatch["server_timestamps"]["count"] == dispatch["jobs"]
    assert dispatch["server_timestamps"]["p50_ms"] >= 0  # millisecond timestamps: 0 is possible

    rec = r["recognize"]
    _positive(rec["single"]["p50_ms"], "recognize.single.p50_ms")
    _positive(rec["single"]["p95_ms"], "recognize.single.p95_ms")
    _positive(rec["batch"]["images_per_s"], "recognize.batch.images_per_s")

    for key in ("n", "scaled"):
        mem = r["memory"][key]
        _positive(mem["identifiers"], f"memory.{key}.identifiers")
        _positive(mem["peak_worker_rss_mib"], f"memory.{key}.peak_worker_rss_mib")
        assert mem["peak_worker_plus_children_rss_mib"] >= mem["peak_worker_rss_mib"]
