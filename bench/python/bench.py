#!/usr/bin/env python3
"""errands vs Taskiq (taskiq-redis, Redis Streams) vs arq, on this machine's Redis.

    python3 bench/python/bench.py [--jobs 20000] [--concurrency 10]

For each system, in its own venv (created here on first use under bench/python/.venvs/):

- enqueue one-by-one: N jobs, each awaited before the next;
- enqueue batch: N jobs in one go (errands: POST /v1/jobs/batch; Taskiq and arq have no batch
  API, so their closest equivalent is used: 1,000 concurrent enqueue calls at a time);
- process: N no-op jobs are enqueued first, then one worker process running 10 jobs at once is
  started; the time is from starting the worker to the last job's completion. Each job prints
  the time it finished, as python_queue_benchmark's do (``--task print``, read from the worker's
  stdout), or INCRs a Redis counter polled every 5 ms (``--task incr``).

errands runs with its throwaway in-memory store (Redis here keeps nothing on disk either) and,
for reference, with its SQLite store. Needs: Redis on 127.0.0.1:6379 (db 9 is flushed), the
errands server binary ($ERRANDS_BIN, else target/release/errands, built with cargo if missing).
Uses only the standard library itself.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VENVS = HERE / ".venvs"
PACKAGES = {
    "errands": [str(ROOT / "python"), "redis"],
    "taskiq": ["taskiq", "taskiq-redis"],
    "arq": ["arq"],
}
PHASES = ["enqueue-one", "enqueue-batch", "process"]


def venv_python(name: str) -> Path:
    python = VENVS / name / "bin" / "python"
    if not python.exists():
        print(f"creating venv for {name} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENVS / name)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *PACKAGES[name]],
            check=True,
        )
    elif name == "errands":
        # The SDK is this repository's: measure the code checked out now, not the venv's copy.
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--force-reinstall",
                str(ROOT / "python"),
            ],
            check=True,
        )
    return python


def server_binary() -> str:
    configured = os.environ.get("ERRANDS_BIN")
    if configured:
        return configured
    binary = ROOT / "target" / "release" / "errands"
    if not binary.exists():
        subprocess.run(
            ["cargo", "build", "--release", "-p", "errands"], cwd=ROOT, check=True
        )
    return str(binary)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A fresh errands server per phase, so every phase starts from an empty store."""

    def __init__(self, store_args: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                server_binary(),
                "serve",
                "--listen",
                f"127.0.0.1:{self.port}",
                *store_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise SystemExit("errands server did not start") from None
                time.sleep(0.02)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def run_phase(
    system: str, phase: str, jobs: int, concurrency: int, env: dict[str, str]
) -> float:
    script = "sys_errands.py" if system.startswith("errands") else f"sys_{system}.py"
    python = venv_python(system.split(" ")[0])
    done = subprocess.run(
        [
            str(python),
            script,
            phase,
            "--jobs",
            str(jobs),
            "--concurrency",
            str(concurrency),
        ],
        cwd=HERE,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{system} {phase} failed:\n{done.stderr[-3000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])


def run_fresh(system: str, phase: str, jobs: int, concurrency: int) -> float:
    """One run of a phase, on a fresh errands server (Redis is flushed by the phase itself)."""
    server = None
    env: dict[str, str] = {}
    tmp = tempfile.mkdtemp(prefix="errands-bench-")
    if system == "errands":
        server = Server(["--memory"])
    elif system == "errands sqlite":
        server = Server(["--db", os.path.join(tmp, "bench.db")])
    if server is not None:
        env["ERRANDS_URL"] = server.url
    try:
        return run_phase(system, phase, jobs, concurrency, env)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per phase; the best time counts"
    )
    parser.add_argument(
        "--systems", default="errands,errands sqlite,taskiq,arq", help="comma separated"
    )
    parser.add_argument(
        "--task",
        choices=["print", "incr"],
        default="print",
        help="what each job does: print the time (python_queue_benchmark) or a Redis INCR",
    )
    a = parser.parse_args()
    # Read by common.py in every script and worker process started from here.
    os.environ["BENCH_TASK"] = a.task
    if shutil.which("redis-cli"):
        subprocess.run(["redis-cli", "ping"], check=True, capture_output=True)

    results: dict[str, dict[str, float]] = {}
    for system in a.systems.split(","):
        results[system] = {}
        for phase in PHASES:
            seconds = min(
                run_fresh(system, phase, a.jobs, a.concurrency) for _ in range(a.repeat)
            )
            results[system][phase] = seconds
            print(f"{system:15} {phase:14} {seconds:8.3f} s", file=sys.stderr)

    n = a.jobs
    print(
        f"\n{n:,} no-op jobs (task: {a.task}), worker concurrency {a.concurrency}, "
        f"best of {a.repeat}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    header = f"{'system':16}{'enqueue 1-by-1':>22}{'enqueue batch*':>22}{'process':>22}"
    print(header)
    print("-" * len(header))
    for system, r in results.items():
        cells = [f"{r[p]:7.2f} s {n / r[p]:8,.0f}/s" for p in PHASES]
        print(f"{system:16}" + "".join(f"{c:>22}" for c in cells))
    if "errands" in results:
        print("\ntime ratio, other / errands (memory); above 1 means errands is faster")
        base = results["errands"]
        for system, r in results.items():
            if system == "errands":
                continue
            cells = [f"{r[p] / base[p]:.2f}x" for p in PHASES]
            print(f"{system:16}" + "".join(f"{c:>22}" for c in cells))
    print(
        "\n* errands: POST /v1/jobs/batch (10,000 per request); Taskiq and arq have no batch"
    )
    print("  API, so they run 1,000 enqueue calls concurrently at a time.")


if __name__ == "__main__":
    main()
