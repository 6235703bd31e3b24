"""docs/tutorial.md stays true: its commands and its Python run against the real stack, in the order it gives them."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from tests.client.helpers import cli, cli_env, jpeg, library_identifiers
from tests.conftest import ROOT

TUTORIAL = ROOT / "docs" / "tutorial.md"
# The test's photos are synthetic (noise), with no face for a face detector to find: training names the gallery
# engine, which learns any picture, instead of the default engine of a face library (the face engine, when installed).
ENGINE = "engineshed-gallery"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", TUTORIAL.read_text(), flags=re.S)


def commands() -> list[list[str]]:
    """The client commands of the tutorial's sh blocks (make run and source are the stack the fixtures start)."""
    found = []
    for block in blocks("sh"):
        for line in block.splitlines():
            if line.startswith("engineshed "):
                found.append(line.split()[1:])
    return found


def photos(root: Path) -> None:
    for e, name in enumerate(("alice", "bob")):
        folder = root / "faces" / name
        folder.mkdir(parents=True)
        for n in range(3):
            (folder / f"{n + 1:03d}.jpg").write_bytes(jpeg(700 + 10 * e + n))
    shutil.copy(root / "faces" / "alice" / "002.jpg", root / "new-photo.jpg")


def test_the_tutorial_names_the_commands_it_teaches():
    names = [c[0] for c in commands()]
    assert names == ["import", "train", "recognize", "jobs", "models"]


def test_the_command_line_part_of_the_tutorial_works(org, tmp_path, start_worker):
    photos(tmp_path)
    start_worker()
    for args in commands():
        if args[0] == "train":
            args = [*args, "--engine", ENGINE]
        done = cli(org, *args, cwd=tmp_path)
        assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
        assert "Traceback" not in done.stderr
    recognized = cli(org, "recognize", "new-photo.jpg", "--library", "staff", "--json", cwd=tmp_path)
    assert recognized.returncode == 0, recognized.stderr
    assert json.loads(recognized.stdout)["matches"][0]["entityName"] == "alice"
    table = cli(org, "recognize", "new-photo.jpg", "--library", "staff", cwd=tmp_path)
    assert table.returncode == 0 and "alice" in table.stdout


def test_the_python_part_of_the_tutorial_works_and_runs_again_without_adding_twice(org, tmp_path, start_worker):
    photos(tmp_path)
    start_worker()
    (script,) = blocks("python")
    assert 'client.train(library["id"])' in script
    (tmp_path / "tutorial.py").write_text(script.replace('client.train(library["id"])', f'client.train(library["id"], engine_id="{ENGINE}")'))
    for run in ("first", "second"):
        done = subprocess.run([sys.executable, "tutorial.py"], env=cli_env(org), cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (run, done.stderr[-3000:])
        lines = done.stdout.splitlines()
        assert lines[-2].startswith("alice: ") or lines[-1].startswith("alice: "), (run, lines[-5:])
        assert any(line.startswith("complete") for line in lines), run
    # The second run found what the first added: two people, three photos each, named folder/file.
    library_id = org.client.query('{ libraries(name: "staff-py") { records { id } } }').ok()["libraries"]["records"][0]["id"]
    identifiers = library_identifiers(org, library_id)
    assert sorted((i["entity"], i["contentSha256"]) for i in identifiers) == sorted(
        (folder.name, hashlib.sha256(photo.read_bytes()).hexdigest())
        for folder in (tmp_path / "faces").iterdir() for photo in folder.glob("*.jpg"))


def test_without_url_or_token_the_cli_finds_the_local_gateway_and_its_admin_token_file(org, tmp_path):
    data_dir = tmp_path / "dot-engineshed"
    data_dir.mkdir()
    (data_dir / "admin-token").write_text(org.token + "\n")
    env = {k: v for k, v in cli_env(org).items() if k not in ("ENGINESHED_URL", "ENGINESHED_TOKEN")}
    env.update(PORT=str(urlsplit(org.gateway.url).port), ENGINESHED_DATA_DIR=str(data_dir))
    done = subprocess.run([sys.executable, "-m", "engineshed.cli.main", "jobs", "list", "--json"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    # The local admin token never goes to a remote server named by ENGINESHED_URL.
    remote = dict(env, ENGINESHED_URL="http://engineshed.example.invalid:8000")
    refused_remote = subprocess.run([sys.executable, "-m", "engineshed.cli.main", "jobs", "list"], env=remote, cwd=ROOT,
                                    capture_output=True, text=True, timeout=120)
    assert refused_remote.returncode == 3 and "no token" in refused_remote.stderr
    (data_dir / "admin-token").unlink()
    refused = subprocess.run([sys.executable, "-m", "engineshed.cli.main", "jobs", "list"], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 3 and "no token" in refused.stderr
