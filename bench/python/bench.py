#!/usr/bin/env python3
"""errands vs Huey, pgqueuer, Taskiq and arq, on this machine's Redis and PostgreSQL.

    python3 bench/python/bench.py [--jobs 20000] [--concurrency 10]

For each system, in its own venv (created here on first use under bench/python/.venvs/):

- enqueue batch: N jobs in one go (errands: POST /v1/jobs/batch; pgqueuer: one multi-row
  INSERT per 10,000; Taskiq and arq have no batch API, so 1,000 concurrent enqueue calls at a
  time; Huey has neither, so its plain loop);
- process: N jobs are enqueued one by one (each awaited before the next: the 1-by-1 figures,
  total and per-enqueue p50/p99), then the workers are started, 10 slots in total, once as one
  process x 10 and once as two processes x 5; the time is from starting them to the last
  job's completion (so worker start-up is included for everyone), and the best counts;
- producers: 100 asyncio tasks of one process enqueue N jobs at once (Huey: 100 threads);
- latency (errands only): an idle pool of two worker processes x 5, jobs offered at 500/s,
  enqueue-to-start p50/p99/max.

Each job prints the time it started (python_queue_benchmark's job, ``--task print``, read from
the workers' stdout), or INCRs a Redis counter polled every 5 ms (``--task incr``).

errands runs on its file store (SQLite) with ``--sync full`` (the main comparison) and
``--sync normal``, and with its throwaway in-memory store. Needs: Redis on 127.0.0.1:6379 (db 9
is flushed), PostgreSQL on 127.0.0.1:5432 (user postgres, trust; a database errands_bench_pgq
is created and dropped), the errands server binary ($ERRANDS_BIN, else
target/release/errands, built with cargo if missing). Uses only the standard library itself.
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
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VENVS = HERE / ".venvs"
PACKAGES = {
    "errands": [str(ROOT / "python"), "redis"],
    "huey": ["huey", "redis"],
    "pgqueuer": ["pgqueuer[asyncpg]", "redis"],
    "taskiq": ["taskiq", "taskiq-redis"],
    "arq": ["arq"],
}
PEERS = ["huey", "pgqueuer", "taskiq", "arq"]
ERRANDS_STORES = {
    "errands": ["--sync", "full"],  # with --db <file>: the configuration
    "errands normal": ["--sync", "normal"],
    "errands memory": ["--memory"],
}
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DB = "errands_bench_pgq"
LATENCY_JOBS = 5_000  # 10 s at 500/s


_REFRESHED: set[str] = set()


def venv_python(name: str) -> Path:
    python = VENVS / name / "bin" / "python"
    if not python.exists():
        print(f"creating venv for {name} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENVS / name)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *PACKAGES[name]],
            check=True,
        )
    elif name == "errands" and name not in _REFRESHED:
        # The SDK is this repository's: measure the code checked out now, not the venv's copy;
        # once per run, as the wheel's build runs cargo (noise beside a measurement).
        _REFRESHED.add(name)
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
        subprocess.run(["cargo", "build", "--release", "-p", "errands"], cwd=ROOT, check=True)
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
    system: str, phase: str, a: argparse.Namespace, procs: int, env: dict[str, str]
) -> dict[str, Any]:
    name = system.split(" ")[0]
    jobs = LATENCY_JOBS if phase == "latency" else a.jobs
    done = subprocess.run(
        [str(venv_python(name)), f"sys_{name}.py", phase, "--jobs", str(min(jobs, a.jobs)),
         "--concurrency", str(a.concurrency), "--procs", str(procs), "--fill", a.fill],
        cwd=HERE, env={**os.environ, **env}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{system} {phase} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def psql(sql: str) -> None:
    subprocess.run(["psql", PG_ADMIN, "-qAtc", sql], check=True, capture_output=True)


def run_fresh(system: str, phase: str, a: argparse.Namespace, procs: int) -> dict[str, Any]:
    """One run of a phase on a fresh store: a new errands server, or a new Postgres database
    (Redis is flushed by the phase itself)."""
    server = None
    env: dict[str, str] = {}
    tmp = tempfile.mkdtemp(prefix="errands-bench-")
    if system in ERRANDS_STORES:
        store = ERRANDS_STORES[system]
        if "--memory" not in store:
            store = ["--db", os.path.join(tmp, "bench.db"), *store]
        server = Server(store)
        env["ERRANDS_URL"] = server.url
    if system == "pgqueuer":
        psql(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
        psql(f"CREATE DATABASE {PG_DB}")
        env["BENCH_PG_DSN"] = PG_ADMIN.rsplit("/", 1)[0] + "/" + PG_DB
    try:
        return run_phase(system, phase, a, procs, env)
    finally:
        if server is not None:
            server.stop()
        if system == "pgqueuer":
            psql(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
        shutil.rmtree(tmp, ignore_errors=True)


def compilers() -> list[str]:
    """cargo/rustc processes now running: a figure taken beside them is noise."""
    ps = subprocess.run(["ps", "-eo", "comm="], capture_output=True, text=True, check=False)
    return sorted({c for c in ps.stdout.split() if c in ("cargo", "rustc")})


def load() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()


def measure(system: str, a: argparse.Namespace) -> dict[str, Any]:
    """Every phase of one system; the best of --repeat runs, and of 1 x 10 and 2 x 5 workers."""
    r: dict[str, Any] = {}

    def best(phase: str, procs: int, key: str) -> dict[str, Any]:
        runs = [run_fresh(system, phase, a, procs) for _ in range(a.repeat)]
        return min(runs, key=lambda x: float(x[key]))

    r["batch"] = best("enqueue-batch", 1, "seconds")
    r["process"] = {p: best("process", p, "seconds") for p in (1, 2)}
    fills = [r["process"][p]["fill"] for p in (1, 2)]
    r["one"] = min(fills, key=lambda x: float(x["seconds"]))
    r["drain"] = min(float(r["process"][p]["seconds"]) for p in (1, 2))
    r["producers"] = best("producers", 1, "seconds")
    if system in ERRANDS_STORES:
        r["latency"] = best("latency", 2, "p99_ms")
    print(f"{system:15} {json.dumps(r)}  load {load()}", file=sys.stderr)
    return r


def table(results: dict[str, dict[str, Any]], a: argparse.Namespace) -> None:
    n = a.jobs
    print(
        f"\n{n:,} jobs (task: {a.task}, fill: {a.fill}), {a.concurrency} worker slots in total, "
        f"best of {a.repeat}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    print("| system | 1-by-1 total | p50 | p99 | batch | drain 1x10 | drain 2x5 | "
          "100 producers | latency p50 / p99 / max |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for system, r in results.items():
        one, lat = r["one"], r.get("latency")
        cells = [
            f"{one['seconds']:.2f} s", f"{one['p50_ms']:.3f} ms", f"{one['p99_ms']:.3f} ms",
            f"{r['batch']['seconds']:.2f} s",
            *(f"{r['process'][p]['seconds']:.2f} s" for p in (1, 2)),
            f"{r['producers']['jobs_per_s']:,.0f}/s",
            f"{lat['p50_ms']:.2f} / {lat['p99_ms']:.2f} / {lat['max_ms']:.2f} ms" if lat else "-",
        ]  # fmt: skip
        print(f"| {system} | " + " | ".join(cells) + " |")


def targets(results: dict[str, dict[str, Any]]) -> None:
    """The issue's targets, errands against the fastest peer of this run. Each figure is a
    ratio that passes at or above the needed one (limits are turned into ratios too)."""
    peers = {s: r for s, r in results.items() if s in PEERS}
    if "errands" not in results or not peers:
        return
    full, normal = results["errands"], results.get("errands normal")
    drain = min(peers, key=lambda s: peers[s]["drain"])
    one = min(peers, key=lambda s: peers[s]["one"]["seconds"])
    checks = [
        (f"drain >= 4x the fastest peer's ({drain})", peers[drain]["drain"] / full["drain"], 4),
        ("1-by-1 p50 < 0.6 ms (0.6 ms / p50)", 0.6 / full["one"]["p50_ms"], 1),
        ("100 producers >= 20,000 jobs/s (jobs/s / 20,000)",
         full["producers"]["jobs_per_s"] / 20_000, 1),
    ]  # fmt: skip
    if normal is not None:
        ratio = peers[one]["one"]["seconds"] / normal["one"]["seconds"]
        checks.append((f"--sync normal 1-by-1 >= the fastest peer's ({one})", ratio, 1))
    if "pgqueuer" in peers:
        ratio = peers["pgqueuer"]["one"]["seconds"] / full["one"]["seconds"]
        checks.append(("1-by-1 >= 2x pgqueuer's", ratio, 2))
    if "latency" in full:
        checks.append(("latency p99 < 5 ms (5 ms / p99)", 5 / full["latency"]["p99_ms"], 1))
        checks.append(("latency max < 20 ms (20 ms / max)", 20 / full["latency"]["max_ms"], 1))
    print("\n| target (errands: file store, --sync full unless said) | figure | needed | |")
    print("| --- | ---: | ---: | --- |")
    for what, figure, needed in checks:
        verdict = "pass" if figure >= needed else "MISS"
        print(f"| {what} | {figure:.2f}x | {needed}x | {verdict} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per phase; the best time counts"
    )
    parser.add_argument(
        "--systems", default=",".join([*ERRANDS_STORES, *PEERS]), help="comma separated"
    )
    parser.add_argument(
        "--task",
        choices=["print", "incr"],
        default="print",
        help="what each job does: print the time (python_queue_benchmark) or a Redis INCR",
    )
    parser.add_argument(
        "--fill", choices=["one", "batch"], default="one",
        help="how the process phase enqueues its jobs before the drain",
    )  # fmt: skip
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument(
        "--no-sdk-refresh", action="store_true",
        help="measure the SDK already in the errands venv (its rebuild needs cargo and disk)",
    )  # fmt: skip
    a = parser.parse_args()
    if a.no_sdk_refresh:
        _REFRESHED.add("errands")
    # Read by common.py in every script and worker process started from here.
    os.environ["BENCH_TASK"] = a.task
    if shutil.which("redis-cli"):
        subprocess.run(["redis-cli", "ping"], check=True, capture_output=True)
    for name in {s.split(" ")[0] for s in a.systems.split(",")}:
        venv_python(name)  # venvs made and the SDK refreshed before anything is timed
    print(f"start: load {load()}, compilers running: {compilers() or 'none'}", file=sys.stderr)
    results: dict[str, dict[str, Any]] = {}
    for system in a.systems.split(","):
        try:
            results[system] = measure(system, a)
        except SystemExit as failed:  # one system's failure does not lose the others' figures
            print(f"{system}: {failed}", file=sys.stderr)
    print(f"end: load {load()}, compilers running: {compilers() or 'none'}", file=sys.stderr)
    table(results, a)
    targets(results)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
