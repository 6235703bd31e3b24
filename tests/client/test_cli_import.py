"""``engineshed import`` as a user runs it, against the real stack: resuming after Ctrl-C, bad files, bad tokens."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from collections import Counter

from tests.client.helpers import cli, cli_env, cli_json, image_folder, library_id_by_name, library_identifiers, png
from tests.conftest import ROOT
from tests.support.waits import wait_for


def test_an_import_makes_one_entity_per_folder_and_a_second_run_uploads_nothing(org, tmp_path):
    made = image_folder(tmp_path / "faces", {"alice": 4, "bob": 3})
    (tmp_path / "faces" / ".DS_Store").write_bytes(b"\0\1junk")  # hidden files are not data
    first = cli_json(org, "import", str(tmp_path / "faces"), "--library", "staff", "--entity-per-folder")
    assert (first["uploaded"], first["skipped"], first["failed"], first["entitiesCreated"]) == (7, 0, [], 2)
    assert first["libraryCreated"] is True and first["interrupted"] is False and first["exitStatus"] == 0
    library_id = library_id_by_name(org, "staff")
    stored = library_identifiers(org, library_id)
    expected = {(name, hashlib.sha256(p.read_bytes()).hexdigest()) for name, paths in made.items() for p in paths}
    assert {(r["entity"], r["contentSha256"]) for r in stored} == expected
    assert all(r["contentType"] == "image/png" for r in stored)

    again = cli_json(org, "import", str(tmp_path / "faces"), "--library", "staff", "--entity-per-folder")
    assert (again["uploaded"], again["skipped"], again["entitiesCreated"], again["libraryCreated"]) == (0, 7, 0, False)
    assert len(library_identifiers(org, library_id)) == 7


def test_without_entity_per_folder_each_file_is_an_entity_and_copies_are_sent_once(org, tmp_path):
    root = tmp_path / "gallery"
    (root / "shelf").mkdir(parents=True)
    (root / "cup.png").write_bytes(png(1))
    (root / "shelf" / "vase.png").write_bytes(png(2))
    (root / "shelf" / "vase-copy.png").write_bytes(png(2))  # another entity: its own identifier
    result = cli_json(org, "import", str(root), "--library", "things", "--type", "image")
    assert (result["uploaded"], result["entitiesCreated"]) == (3, 3)
    names = Counter(r["entity"] for r in library_identifiers(org, library_id_by_name(org, "things")))
    assert names == {"cup": 1, "shelf/vase": 1, "shelf/vase-copy": 1}

    twins = tmp_path / "twins"
    (twins / "carol").mkdir(parents=True)
    (twins / "carol" / "a.png").write_bytes(png(3))
    (twins / "carol" / "b.png").write_bytes(png(3))  # the same photo twice in one entity: stored once
    result = cli_json(org, "import", str(twins), "--library", "twins", "--entity-per-folder")
    assert (result["uploaded"], result["skipped"]) == (1, 1)


def test_non_images_and_corrupt_files_are_reported_not_fatal(org, tmp_path):
    root = tmp_path / "mixed"
    image_folder(root, {"alice": 2, "bob": 1})
    (root / "alice" / "notes.txt").write_text("not a photo")
    (root / "alice" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)  # a JPEG header, then garbage
    truncated = png(99, side=96)
    (root / "bob" / "truncated.png").write_bytes(truncated[: len(truncated) // 2])
    (root / "bob" / "empty.png").write_bytes(b"")
    (root / "loose.png").write_bytes(png(7))  # not in an entity folder
    result = cli_json(org, "import", str(root), "--library", "mixed", "--entity-per-folder", expect=1)
    assert result["uploaded"] == 3 and result["exitStatus"] == 1
    reasons = {f["path"]: f["reason"] for f in result["failed"]}
    assert set(reasons) == {"alice/notes.txt", "alice/broken.jpg", "bob/truncated.png", "bob/empty.png", "loose.png"}
    assert reasons["alice/notes.txt"].startswith("not an image")
    assert reasons["alice/broken.jpg"].startswith(("corrupt image", "not an image"))
    assert reasons["bob/truncated.png"].startswith("corrupt image")
    assert reasons["bob/empty.png"] == "empty file"
    assert "entity folder" in reasons["loose.png"]
    assert len(library_identifiers(org, library_id_by_name(org, "mixed"))) == 3

    # The summary a person reads names each file and why, and the exit status says something failed.
    done = cli(org, "import", str(root), "--library", "mixed", "--entity-per-folder")
    assert done.returncode == 1
    assert "0 uploaded, 3 already there, 5 failed" in done.stderr
    for path in reasons:
        assert path in done.stdout
    assert "Traceback" not in done.stderr


def test_ctrl_c_stops_an_import_and_the_same_command_resumes_it_without_sending_anything_twice(org, tmp_path):
    total = 300  # enough that the import is still running when the first uploads are seen, on a fast machine too
    made = image_folder(tmp_path / "big", {"dora": total}, seed=5)
    args = [sys.executable, "-m", "engineshed.cli.main", "import", str(tmp_path / "big"), "--library", "big",
            "--entity-per-folder", "--concurrency", "2", "--json"]
    proc = subprocess.Popen(args, env=cli_env(org), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        library_id = wait_for(lambda: library_id_by_name(org, "big"), timeout=60, what="the library")
        wait_for(lambda: len(library_identifiers(org, library_id)) >= 5, timeout=60, interval=0.05, what="some uploads")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    first = json.loads(out)
    assert first["interrupted"] is True and first["failed"] == []
    stored = library_identifiers(org, library_id)
    assert first["uploaded"] == len(stored) and 5 <= len(stored) < total
    assert first["uploaded"] + first["notStarted"] == total

    second = cli_json(org, "import", str(tmp_path / "big"), "--library", "big", "--entity-per-folder")
    assert second["skipped"] == len(stored) and second["uploaded"] == total - len(stored)
    after = library_identifiers(org, library_id)
    digests = Counter(r["contentSha256"] for r in after)
    assert len(after) == total and max(digests.values()) == 1  # nothing uploaded twice
    assert set(digests) == {hashlib.sha256(p.read_bytes()).hexdigest() for p in made["dora"]}


def test_a_wrong_token_is_a_clear_error_and_its_own_exit_status(org, tmp_path):
    image_folder(tmp_path / "faces", {"erin": 1})
    done = cli(org, "import", str(tmp_path / "faces"), "--library", "nope", "--entity-per-folder", token="not-a-real-token")
    assert done.returncode == 3
    assert "refused the token" in done.stderr and "Traceback" not in done.stderr
    assert library_id_by_name(org, "nope") is None
    listed = cli(org, "models", "list", token="not-a-real-token")
    assert listed.returncode == 3 and "refused the token" in listed.stderr


def test_an_unreachable_server_and_bad_arguments_have_their_own_exit_statuses(org, tmp_path):
    from gateway.devstack import find_free_port

    image_folder(tmp_path / "faces", {"fred": 1})
    done = cli(org, "import", str(tmp_path / "faces"), "--library", "x", url=f"http://127.0.0.1:{find_free_port()}")
    assert done.returncode == 4 and "cannot reach" in done.stderr and "Traceback" not in done.stderr
    missing = cli(org, "import", str(tmp_path / "nowhere"), "--library", "x")
    assert missing.returncode == 2 and "not a directory" in missing.stderr
    no_type = cli(org, "import", str(tmp_path / "faces"), "--library", "y", "--type", "video")
    assert no_type.returncode == 2 and "--library-type" in no_type.stderr
    cli_json(org, "import", str(tmp_path / "faces"), "--library", "objects-lib", "--type", "image", "--entity-per-folder")
    wrong_type = cli(org, "import", str(tmp_path / "faces"), "--library", "objects-lib", "--type", "audio-recording")
    assert wrong_type.returncode == 2 and "takes identifiers of type image, not audio-recording" in wrong_type.stderr
    zero = cli(org, "import", str(tmp_path / "faces"), "--library", "objects-lib", "--concurrency", "0")
    assert zero.returncode == 2 and "--concurrency" in zero.stderr
