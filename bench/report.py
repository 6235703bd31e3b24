"""The report: the machine and versions it names, and the markdown tables of its figures printed at the end."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any


def machine_info() -> dict[str, Any]:
    import onnxruntime as ort

    cpu_model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    gpu = None
    if shutil.which("nvidia-smi"):
        with contextlib.suppress(Exception):
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
            gpu = ", ".join(line.strip() for line in out.stdout.splitlines() if line.strip()) or None
    memory_gib = None
    with contextlib.suppress(Exception):
        import psutil

        memory_gib = round(psutil.virtual_memory().total / 2**30, 1)
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model or platform.processor() or None,
        "memory_gib": memory_gib,
        "platform": platform.platform(),
        "onnxruntime_available_providers": ort.get_available_providers(),
        "onnx_provider_setting": os.environ.get("ENGINESHED_ONNX_PROVIDER", "auto"),
        "gpu": gpu,
    }


def versions() -> dict[str, str | None]:
    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    import numpy
    import onnxruntime

    return {
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
        "engineshed": version("engineshed"),
        "pillow": version("pillow"),
        "strawberry-graphql": version("strawberry-graphql"),
    }


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "n/m"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def upload_rows(report: dict[str, Any]) -> list[str]:
    rows = []
    for key in ("upload_vs_s3_put", "upload_vs_s3_put_photos"):
        u = report["results"].get(key)
        if u is None:
            continue
        side = u.get("image_size", 64)
        kb = u["bytes"] / u["uploads"] / 1024
        rows += [
            f"| 0 | upload through the API ({u['uploads']:,} × createEntityIdentifier, {side} px, {kb:,.0f} KB average, plain form, {u['concurrency']} in flight, median of {u['passes']}) | {fmt(u['api_uploads_per_s'])} uploads/s |",
            f"| 0 | S3 PUT ceiling: the same bytes, presigned, bare PUTs, {u['concurrency']} in flight | {fmt(u['s3_puts_per_s'])} PUTs/s |",
            f"| 0 | **upload / S3 PUT ceiling, {side} px** | **{fmt(u['api_over_s3_put'], 3)}** |",
            f"| 0 | gateway CPU per upload (user + system), {side} px | {fmt(u['gateway_cpu_ms_per_upload'], 2)} ms |",
        ]
    return rows


def table(report: dict[str, Any]) -> str:
    r = report["results"]
    if report["parameters"].get("only") == "upload":
        return "\n".join(["| # | measurement | figure |", "|---|---|---|", *upload_rows(report)])
    t, inc, rd, rec, dis, mem = r["training"], r["incremental"], r["reads"], r["recognize"], r["dispatch"], r["memory"]
    m, p = report["machine"], report["parameters"]
    lines = [
        f"engineshed bench — {m['cpu_count']} CPUs ({m['cpu_model']}), provider {r['provider']}, GPU {m['gpu'] or 'none'}",
        f"N = {t['identifiers']:,} identifiers ({t['entities']} entities × {p['identifiers_per_entity']}), 64×64 PNG/JPEG, engine {p['engine']}",
        "",
        "| # | measurement | figure |",
        "|---|---|---|",
        *upload_rows(report),
        f"| 1 | upload through the API ({t['upload']['count']:,} × createEntityIdentifier, {report['parameters']['concurrency']} in flight) | {fmt(t['upload']['per_second'])} identifiers/s |",
        f"| 1 | training e2e, createJob → complete | {fmt(t['full']['client_create_to_complete_s'], 2)} s = {fmt(t['e2e_identifiers_per_s'])} identifiers/s |",
        f"| 1 | training, task started → complete | {fmt(t['full']['task_start_to_complete_s'], 2)} s = {fmt(t['task_identifiers_per_s'])} identifiers/s |",
        f"| 1 | raw ceiling: backbone on decoded uint8, batch {t['raw']['batch_size']}, {t['raw']['provider']} | {fmt(t['raw']['identifiers_per_s'])} identifiers/s |",
        f"| 1 | **e2e / raw** (task / raw) | **{fmt(t['e2e_over_raw'], 4)}** ({fmt(t['task_over_raw'], 4)}) |",
        f"| 1 | (reference) Pillow decode, 1 process in the bench | {fmt(t['raw']['decode_single_process_per_s'])} images/s |",
        f"| 1 | S3 GET ceiling: the same {t['s3_get_ceiling']['objects']:,} objects, presigned, bare GETs, {t['s3_get_ceiling']['concurrency']} in flight | {fmt(t['s3_get_ceiling']['identifiers_per_s'])} objects/s |",
        f"| 1 | **e2e / S3 GET ceiling** | **{fmt(t['e2e_over_s3_get'], 3)}** |",
        f"| 3 | incremental retrain, median of {len(inc['runs_client_s'])} (+{inc['added']} identifiers each; median run {inc['run']['embeddings'].get('cached', 'n/m')} cached / {inc['run']['embeddings'].get('computed', 'n/m')} computed) | {fmt(inc['run']['client_create_to_complete_s'], 2)} s (runs: {', '.join(fmt(x, 2) for x in inc['runs_client_s'])} s) |",
        f"| 3 | **incremental / full** (createJob → complete; task) | **{fmt(inc['incremental_over_full_client'], 3)}** ({fmt(inc['incremental_over_full_task'], 3)}) |",
    ]
    for level, lat in rd["latency"].items():
        lines.append(
            f"| 4 | GetIdentifiers (30 entities × 5 identifiers), {level} client(s), {lat['count']} requests | "
            f"p50 {fmt(lat['p50_ms'])} ms, p95 {fmt(lat['p95_ms'])} ms, {fmt(lat['per_second'])} req/s |"
        )
    if "gateway_processes" in r:
        lines += processes_lines(r["gateway_processes"])
    sql = rd["sql_per_request"]
    lines.append(f"| 4 | SQL statements per GetIdentifiers, page size 5 / 30 | {fmt(sql['5']['sql_statements'])} / {fmt(sql['30']['sql_statements'])} |")
    co, st = dis["client_observed"], dis["server_timestamps"]
    lines.append(f"| 5 | dispatch createJob → running, client polling every {fmt(dis['poll_interval_ms'], 0)} ms ({dis['jobs']} jobs) | p50 {fmt(co['p50_ms'])} ms, p95 {fmt(co['p95_ms'])} ms |")
    lines.append(f"| 5 | dispatch, task createdDateTime → startedDateTime (server, ms resolution) | p50 {fmt(st['p50_ms'])} ms, p95 {fmt(st['p95_ms'])} ms |")
    s, b = rec["single"], rec["batch"]
    lines.append(f"| 6 | recognize one image, warm model, {s['count']} sequential calls | p50 {fmt(s['p50_ms'])} ms, p95 {fmt(s['p95_ms'])} ms |")
    lines.append(f"| 6 | recognize, {b['concurrency']} concurrent calls ({b['count']} images) | {fmt(b['images_per_s'])} images/s (p95 {fmt(b['p95_ms'])} ms) |")
    for key, label in (("n", "N"), ("scaled", f"{mem['scaled']['scale']}×N")):
        mm = mem[key]
        lines.append(
            f"| 7 | peak RSS training {label} = {mm['identifiers']:,} identifiers: worker / + {mm['children_seen']} children | "
            f"{fmt(mm['peak_worker_rss_mib'])} MiB / {fmt(mm['peak_worker_plus_children_rss_mib'])} MiB (baseline {fmt(mm['baseline_worker_rss_mib'])} MiB) |"
        )
    lines += ["", "Training wall time breakdown (full training of N):", "", "| stage | seconds | of wall | source |", "|---|---|---|---|"]
    for row in r["breakdown"]:
        frac = row["fraction_of_wall"]
        lines.append(f"| {row['stage']} | {fmt(row['seconds'], 3)} | {'n/m' if frac is None else f'{frac * 100:.1f} %'} | {row['note']} |")
    lines.append("")
    lines.append("n/m = not measured by the product.")
    return "\n".join(lines)


def processes_lines(gp: dict[str, Any]) -> list[str]:
    lines = []
    for level in gp["levels"].values():
        lines.append(
            f"| 8 | GetIdentifiers (30 × 5), {gp['concurrency']} clients, {level['processes']} gateway process(es)"
            f" ({level['processes_answering']} answered), median of {gp['rounds']} × {gp['requests_per_run']} requests | "
            f"{fmt(level['per_second'])} req/s (runs: {', '.join(fmt(r['per_second']) for r in level['runs'])}), p50 {fmt(level['p50_ms'])} ms;"
            f" busy cores of {gp['cpu_count']}: gateway {', '.join(fmt(r['gateway_busy_cores'], 2) for r in level['runs'])},"
            f" clients {', '.join(fmt(r['client_busy_cores'], 2) for r in level['runs'])},"
            f" machine {', '.join(fmt(r['machine_busy_cores'], 2) for r in level['runs'])};"
            f" {fmt(level['per_gateway_core'])} req/s per gateway core |"
        )
    lines.append(f"| 8 | **N processes / 1 process** | **{fmt(gp['n_over_1'], 2)}** |")
    return lines


def pulled_table(report: dict[str, Any]) -> str:
    r = report["results"].get("pulled_models", report["results"])
    f, m = r["face_training"], report["machine"]
    lines = [
        f"engineshed bench, pulled models — {m['cpu_count']} CPUs ({m['cpu_model']}), provider {r['provider']}, GPU {m['gpu'] or 'none'}",
        "",
        "| measurement | figure |",
        "|---|---|",
    ]
    for name, x in r["registration"].items():
        pull = ", ".join(f"{k} {fmt(v, 2)} s" for k, v in x["pull_seconds"].items())
        lines.append(
            f"| {name} ({x['version']}, {x['size_mib']} MiB): registration + validation (static checks, trial, store) | "
            f"{fmt(x['register_and_validate_s'], 2)} s (pull: {pull}; trial {fmt(x['trial_images_per_s'])} images/s at batch "
            f"{x['trial_batch']}, {x['trial_provider']}) |"
        )
    lines += [
        f"| training with {f['model']}, {f['identifiers']} identifiers ({f['image']}), createJob → complete (task timestamps) | "
        f"{fmt(f['run']['task_created_to_completed_s'], 2)} s = {fmt(f['e2e_identifiers_per_s'], 2)} identifiers/s |",
        f"| same, task started → complete | {fmt(f['run']['task_start_to_complete_s'], 2)} s = {fmt(f['task_identifiers_per_s'], 2)} identifiers/s |",
        f"| raw ceiling: the composed backbone on decoded uint8, batch {f['raw']['batch_size']}, {f['raw']['provider']}, "
        f"the better of one session on every core and {f['raw'].get('parallel', 1)} single-threaded runs at once, "
        f"mean of just before / just after | {fmt(f['raw']['identifiers_per_s'], 2)} identifiers/s "
        f"({fmt(f['raw']['before_per_s'], 2)} / {fmt(f['raw']['after_per_s'], 2)}) |",
        f"| **e2e / raw** (task / raw) | **{fmt(f['e2e_over_raw'], 3)}** ({fmt(f['task_over_raw'], 3)}) |",
        "",
        "| stage | seconds | of wall | source |",
        "|---|---|---|---|",
    ]
    for row in f["breakdown"]:
        frac = row["fraction_of_wall"]
        lines.append(f"| {row['stage']} | {fmt(row['seconds'], 3)} | {'n/m' if frac is None else f'{frac * 100:.1f} %'} | {row['note']} |")
    return "\n".join(lines)


def speaker_table(s: dict[str, Any]) -> str:
    from bench import speaker

    rows = [f"| 9 | speaker scenario skipped | {s['skipped']} |"] if "skipped" in s else speaker.rows(s, fmt)
    return "\n".join(["| # | measurement | figure |", "|---|---|---|", *rows])


def face_table(s: dict[str, Any]) -> str:
    from bench import face

    rows = [f"| 10 | face scenario skipped | {s['skipped']} |"] if "skipped" in s else face.rows(s, fmt)
    return "\n".join(["| # | measurement | figure |", "|---|---|---|", *rows])


def labeling_table(s: dict[str, Any]) -> str:
    from bench import labeling

    return "\n".join(["| # | measurement | figure |", "|---|---|---|", *labeling.rows(s, fmt)])


def import_table(r: dict[str, Any]) -> str:
    from bench import import_cli

    return "\n".join(["| # | measurement | figure |", "|---|---|---|", *import_cli.rows(r, fmt)])


def session_memory_table(s: dict[str, Any]) -> str:
    from bench import memory

    return "\n".join(["| # | measurement | figure |", "|---|---|---|", *memory.rows(s, fmt)])


def report_text(report: dict[str, Any], only: str) -> str:
    """What the run prints: the tables of the scenario ``only`` names, or of every scenario in the report."""
    results = report["results"]
    if only == "processes":
        return "\n".join(["| # | measurement | figure |", "|---|---|---|", *processes_lines(results["gateway_processes"])])
    if only == "pulled-models":
        return pulled_table(report)
    if only == "speaker":
        return speaker_table(results)
    if only == "face":
        return face_table(results)
    if only == "labeling":
        return labeling_table(results)
    if only == "import":
        return import_table(results)
    if only == "memory":
        return session_memory_table(results)
    if only == "embeddings":
        from bench import embeddings

        return "\n".join(["| # | measurement | figure |", "|---|---|---|", *embeddings.rows(results)])
    parts = [table(report)]
    if "pulled_models" in results:
        parts.append(pulled_table(report))
    if "speaker" in results:
        parts.append(speaker_table(results["speaker"]))
    if "face" in results:
        parts.append(face_table(results["face"]))
    if "labeling" in results:
        parts.append(labeling_table(results["labeling"]))
    if "import" in results:
        parts.append(import_table(results["import"]))
    if "session_memory" in results:
        parts.append(session_memory_table(results["session_memory"]))
    if "ingest_ratios" in results and "skipped" not in results["ingest_ratios"]:
        from bench import ingest_ratios

        parts.append("\n".join(ingest_ratios.rows(results["ingest_ratios"])))
    return "\n\n".join(parts)
