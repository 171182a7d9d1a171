"""Command line: ``errands-worker module:app`` and ``python -m errands worker module:app``.

(The Rust server's binary is called ``errands``, so the installed Python script is
``errands-worker``; ``python -m errands`` keeps the ``worker`` subcommand.)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
from collections.abc import Sequence

from . import __version__
from .app import App
from .errors import ApiError, Unauthorized
from .logs import LogFormat, configure_logging
from .worker import Worker

__all__ = ["load_app", "main", "worker_main"]

log = logging.getLogger("errands.worker")


def load_app(target: str) -> App:
    """Import ``"package.module:attribute"`` (or just ``"package.module"`` holding one App).

    The current directory is put on ``sys.path`` first, as ``python -m`` would, so
    ``errands-worker myapp.tasks:app`` works from a project root.
    """
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise SystemExit(f"errands-worker: cannot import {module_name!r}: {exc}") from exc
        raise
    if attr:
        obj: object = module
        for part in attr.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                raise SystemExit(f"errands-worker: {module_name!r} has no attribute {attr!r}")
        if not isinstance(obj, App):
            raise SystemExit(f"errands-worker: {target!r} is a {type(obj).__name__}, not an App")
        return obj
    apps = [v for v in vars(module).values() if isinstance(v, App)]
    if len(apps) != 1:
        raise SystemExit(
            f"errands-worker: {module_name!r} holds {len(apps)} App objects; "
            "name one as module:attribute"
        )
    return apps[0]


def _weights(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in filter(None, text.split(",")):
        name, sep, weight = item.partition("=")
        if not sep or not weight.strip().isdigit():
            raise argparse.ArgumentTypeError(f"expected queue=weight, got {item!r}")
        out[name.strip()] = int(weight)
    return out


def _queues(text: str) -> list[str]:
    queues = [q.strip() for q in text.split(",") if q.strip()]
    if not queues:
        raise argparse.ArgumentTypeError("give at least one queue name")
    return queues


def _log_format(text: str) -> LogFormat:
    if text == "text":
        return "text"
    if text == "json":
        return "json"
    raise argparse.ArgumentTypeError(f"expected text or json, got {text!r}")


def _add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("app", help="the App to run, as package.module:attribute")
    parser.add_argument(
        "-c", "--concurrency", type=int, default=10, help="jobs at once (default 10)"
    )
    parser.add_argument(
        "-q",
        "--queues",
        type=_queues,
        help="queues in strict priority order, comma separated "
        "(default: the queues of the app's tasks)",
    )
    parser.add_argument(
        "--weights",
        type=_weights,
        help="pick queues by weight instead of strictly, e.g. interactive=3,batch=1",
    )
    parser.add_argument("--name", help="worker name shown by the server (default host:pid)")
    parser.add_argument(
        "--grace",
        type=float,
        default=30.0,
        help="seconds running jobs get to finish on SIGTERM/SIGINT before they are given back "
        "to the server as interrupted (default 30)",
    )
    parser.add_argument("--url", help="server URL (default $ERRANDS_URL or http://127.0.0.1:7733)")
    parser.add_argument("--token", help="bearer token (default $ERRANDS_TOKEN)")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("ERRANDS_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
    )
    parser.add_argument(
        "--log-format",
        type=_log_format,  # argparse applies it to the default too, so a bad env value errors
        default=os.environ.get("ERRANDS_LOG_FORMAT", "text"),
        metavar="{text,json}",
        help="text (default, $ERRANDS_LOG_FORMAT) or json: one object per line with ts, "
        "level, message, logger, and job_id, queue, kind, attempt inside a job",
    )


async def _run_worker(worker: Worker) -> None:
    loop = asyncio.get_running_loop()
    # First signal drains gracefully; a second one stops at once (Worker.stop handles both).
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    try:
        await worker.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await worker.app.close()


def _worker(args: argparse.Namespace) -> int:
    configure_logging(args.log_level, args.log_format)
    app = load_app(args.app)
    app.client.transport.configure(url=args.url, token=args.token)
    if args.weights and args.queues is None:
        args.queues = list(args.weights)
    worker = Worker(
        app,
        concurrency=args.concurrency,
        queues=args.queues,
        weights=args.weights,
        name=args.name,
        grace=args.grace,
    )
    log.info(
        "errands worker %s: tasks %s, queues %s%s",
        __version__,
        ", ".join(sorted(app.tasks)) or "(none)",
        ",".join(worker.queues),
        f", cron schedules {', '.join(sorted(app.crons))}" if app.crons else "",
    )
    try:
        asyncio.run(_run_worker(worker))
    except Unauthorized as exc:
        log.error("the server refused the token (%s); check --token / ERRANDS_TOKEN", exc)
        return 1
    except ApiError as exc:  # a cron schedule the server refused
        log.error("cannot start the worker: %s", exc)
        return 1
    return 0


def worker_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``errands-worker`` console script."""
    parser = argparse.ArgumentParser(
        prog="errands-worker", description="Run errands tasks for jobs from an errands server."
    )
    _add_worker_arguments(parser)
    return _worker(parser.parse_args(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m errands``."""
    parser = argparse.ArgumentParser(prog="python -m errands")
    parser.add_argument("--version", action="version", version=f"errands {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="run a worker")
    _add_worker_arguments(worker)
    args = parser.parse_args(argv)
    return _worker(args)
