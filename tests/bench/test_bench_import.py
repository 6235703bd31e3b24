"""`python -m bench.run --only import --quick`: scenario 10 runs the real command line and reports positive figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_import_scenario_measures_the_command_against_the_api_ceiling(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run([sys.executable, "-m", "bench.run", "--only", "import", "--quick", "--import-n", "20", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"bench failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    assert "import / API ceiling" in done.stdout
    r = json.loads(out.read_text())["results"]
    assert r["files"] == 20 and r["entities"] == 4
    for key in ("import_files_per_s", "import_upload_phase_files_per_s", "api_ceiling_uploads_per_s", "import_over_ceiling",
                "upload_phase_over_ceiling", "resume_check_files_per_s"):
        assert isinstance(r[key], float) and r[key] > 0, (key, r[key])
    assert r["import_wall_s"] > r["import_upload_phase_s"]  # the whole command includes its phase
