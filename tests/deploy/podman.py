"""podman and podman-compose for the container test: the base image, the project image (rebuilt only when its
build context changed), and a compose project brought up and torn down.

What these machines need of podman (../shared/docs/containers.md): the runc runtime, the cgroupfs manager, host
networking and a containers.conf without default ulimits; no registry serves base images, so the Debian base is
built from Debian's packages with debootstrap when it is missing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.requirements import need

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = "docker.io/library/debian:bookworm-slim"  # the Containerfile's FROM
IMAGE = "localhost/engineshed:test"
HASH_LABEL = "engineshed.context-hash"
# What the Containerfile copies (.containerignore admits these and nothing else), and the Containerfile itself.
CONTEXT = ("Containerfile", ".containerignore", "pyproject.toml", "README.md", "gateway", "engines", "storage", "engineshed")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")  # for pip in the build, behind an intercepting proxy


def context_hash() -> str:
    """A hash of every file the image is built from: equal hashes, equal images."""
    digest = hashlib.sha256()
    for top in CONTEXT:
        path = ROOT / top
        files = [path] if path.is_file() else sorted(
            p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        )
        for file in files:
            digest.update(str(file.relative_to(ROOT)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


class Podman:
    """podman with the global arguments and containers.conf this machine needs."""

    def __init__(self, work: Path) -> None:
        if shutil.which("podman") is None:
            need("podman", "podman is not installed (apt-get install podman runc debootstrap)")
        compose = Path(sys.executable).parent / "podman-compose"
        if not compose.exists():
            need("podman", f"podman-compose is not installed next to {sys.executable} (pip install podman-compose)")
        self.compose_bin = str(compose)
        conf = work / "containers.conf"
        conf.write_text("[containers]\ndefault_ulimits = []\n")
        self.env = dict(os.environ, CONTAINERS_CONF=str(conf))
        self.global_args = ["--cgroup-manager", "cgroupfs"] + (["--runtime", "runc"] if shutil.which("runc") else [])

    def run(self, *args: str, timeout: float = 120, check: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["podman", *self.global_args, *args], env=self.env, capture_output=True, text=True,
                                timeout=timeout, check=False, input=input.decode() if input is not None else None)
        if check and result.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def image_exists(self, image: str) -> bool:
        return self.run("image", "exists", image, check=False).returncode == 0

    def ensure_base_image(self) -> None:
        """The Containerfile's base: present, else built by deploy/base-image.sh (debootstrap), else pulled."""
        if self.image_exists(BASE_IMAGE):
            return
        if shutil.which("debootstrap") and os.geteuid() == 0:
            subprocess.run([str(ROOT / "deploy" / "base-image.sh"), BASE_IMAGE], env=dict(
                self.env, PODMAN_ARGS=" ".join(self.global_args)), check=True, timeout=900, capture_output=True)
            return
        if self.run("pull", BASE_IMAGE, timeout=300, check=False).returncode != 0:
            need("podman", f"{BASE_IMAGE} is missing and neither debootstrap (as root) nor a registry can provide it")

    def ensure_project_image(self, log: Path) -> None:
        """The project image, built unless the one tagged IMAGE was built from this very context."""
        wanted = context_hash()
        found = self.run("image", "inspect", "--format", f'{{{{ .Id }}}} {{{{ index .Labels "{HASH_LABEL}" }}}}', IMAGE,
                         check=False)
        old_id, _, old_hash = found.stdout.strip().partition(" ")
        if found.returncode == 0 and old_hash == wanted:
            return
        self.ensure_base_image()
        secret = ["--secret", f"id=ca-certificates,src={CA_BUNDLE}"] if CA_BUNDLE.exists() else []
        with log.open("w") as out:
            built = subprocess.run(
                ["podman", *self.global_args, "build", "--network", "host", *secret, "--label", f"{HASH_LABEL}={wanted}",
                 "-t", IMAGE, "-f", "Containerfile", "."],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, timeout=1200, check=False,
            )
        if built.returncode != 0:
            raise AssertionError(f"podman build failed ({built.returncode}):\n{log.read_text()[-4000:]}")
        if found.returncode == 0:
            # The image this one replaces: untagged now, and most of a gigabyte that nothing else uses.
            self.run("rmi", old_id, check=False)


class Compose:
    """One compose project of compose.yaml, with the environment that configures it."""

    def __init__(self, podman: Podman, project: str, env: dict[str, str], log_dir: Path) -> None:
        self.podman = podman
        self.project = project
        self.env = dict(podman.env, ENGINESHED_IMAGE=IMAGE, **env)
        self.log_dir = log_dir

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [self.podman.compose_bin, "--podman-args", " ".join(self.podman.global_args), "--in-pod", "false",
                   "-p", self.project, "-f", str(ROOT / "compose.yaml"), *args]
        result = subprocess.run(command, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"podman-compose {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
        return result

    def container(self, service: str) -> str:
        """The name of the service's container."""
        found = self.podman.run("ps", "-a", "--filter", f"label=io.podman.compose.project={self.project}",
                                "--filter", f"label=com.docker.compose.service={service}", "--format", "{{.Names}}")
        names = found.stdout.split()
        assert len(names) == 1, f"service {service}: containers {names}"
        return names[0]

    def running(self, service: str) -> bool:
        state = self.podman.run("inspect", "--format", "{{.State.Running}}", self.container(service), check=False)
        return state.stdout.strip() == "true"

    def exec(self, service: str, *args: str, timeout: float = 120) -> str:
        return self.podman.run("exec", self.container(service), *args, timeout=timeout).stdout

    def logs(self) -> str:
        """Every container's log tail, for a failure's message."""
        names = self.podman.run("ps", "-a", "--filter", f"label=io.podman.compose.project={self.project}",
                                "--format", "{{.Names}}", check=False).stdout.split()
        parts = []
        for name in names:
            out = self.podman.run("logs", "--tail", "40", name, check=False)
            parts.append(f"--- {name} ---\n{out.stdout[-3000:]}{out.stderr[-3000:]}")
        return "\n".join(parts)

    def down(self) -> None:
        (self.log_dir / "compose-logs.txt").write_text(self.logs())
        self.compose("down", "-v", "-t", "5", timeout=300, check=False)
        # podman-compose 1.x leaves the project's named volumes when a service never started: remove what is left.
        volumes = self.podman.run("volume", "ls", "-q", "--filter", f"label=io.podman.compose.project={self.project}",
                                  check=False).stdout.split()
        if volumes:
            self.podman.run("volume", "rm", "-f", *volumes, check=False)
