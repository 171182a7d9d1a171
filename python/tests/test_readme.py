"""python/README.md as a user copies it: the quick start, and the suggested pytest setup.

The files are taken from the README's code blocks (each starts with a ``# path`` comment), so
the README cannot drift from what works.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from errands.testing import ServerHandle

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
_BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def readme_file(name: str) -> str:
    """The README's code block whose first line is ``# name``."""
    found = [
        body for _, body in _BLOCK.findall(README) if body.splitlines()[0].strip() == f"# {name}"
    ]
    assert len(found) == 1, f"expected one block for {name}, found {len(found)}"
    return found[0]


def readme_command(prefix: str) -> str:
    """The one line of the README's bash blocks that starts with ``prefix``."""
    lines = [
        line.strip()
        for kind, body in _BLOCK.findall(README)
        if kind == "bash"
        for line in body.splitlines()
        if line.strip().startswith(prefix)
    ]
    assert len(lines) == 1, f"expected one {prefix!r} command, found {lines}"
    return lines[0]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An empty project holding the quick start's and the testing section's files."""
    names = ["myapp/tasks.py", "enqueue.py", "follow.py", "pyproject.toml", "tests/test_tasks.py"]
    for name in names:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(readme_file(name))
    return tmp_path


def user_env(server: ServerHandle | None = None) -> dict[str, str]:
    """The environment of a user's shell: this venv's scripts on PATH, not this repository's
    sources on the import path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ERRANDS_URL")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    if server is not None:
        env.update(server.env)
    return env


@pytest.fixture
def worker(project: Path, errands_server: ServerHandle) -> Iterator[subprocess.Popen[bytes]]:
    """The README's worker command, run in the project directory."""
    log = (project / "worker.log").open("wb")
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {readme_command('errands-worker ')}"],
        cwd=project,
        env=user_env(errands_server),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_quick_start(
    project: Path, errands_server: ServerHandle, worker: subprocess.Popen[bytes]
) -> None:
    command = readme_command("python enqueue.py")
    done = subprocess.run(
        command.split(),
        cwd=project,
        env=user_env(errands_server),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr + (project / "worker.log").read_text()
    bash = [body for kind, body in _BLOCK.findall(README) if kind == "bash" and command in body]
    shown = bash[0].split(command, 1)[1].strip().splitlines()[0]
    assert shown.startswith("# ")
    assert done.stdout.strip() == shown[2:]


def test_following_a_job(
    project: Path, errands_server: ServerHandle, worker: subprocess.Popen[bytes]
) -> None:
    done = subprocess.run(
        [sys.executable, "follow.py"],
        cwd=project,
        env=user_env(errands_server),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # The first line is the job as fetched on subscribing: a fast worker may have started or
    # even finished it by then. Subscribed while it was queued, every later event arrives.
    # A job fetched finished comes as its snapshot alone: state, then the progress it reported.
    if lines[0] == "state completed":
        assert lines == ["state completed", "progress 30.0 extracting", "{'pages': 12}"]
        return
    assert lines[0] in ("state queued", "state running"), lines
    if lines[0] == "state queued":
        assert "progress 30.0 extracting" in lines
    assert set(lines[1:-2]) <= {"state running", "progress 30.0 extracting"}, lines
    assert lines[-2:] == ["state completed", "{'pages': 12}"]


def test_suggested_pytest_config_raises_no_deprecation_warning(project: Path) -> None:
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "pytest"),  # as a user runs it
            "-W",
            "error::DeprecationWarning",
            "-W",
            "error::PendingDeprecationWarning",
            "-p",
            "no:cacheprovider",
            "-q",
        ],
        cwd=project,
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    assert "warning" not in done.stdout.lower()
