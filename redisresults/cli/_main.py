"""``main``: parse, set up logging and SIGTERM for this process, run one command, map errors to exit codes."""

from __future__ import annotations

import argparse
import os
import signal
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, Optional

from .._embedded import EmbeddedServer
from ._args import build_parser
from ._bench_command import cmd_bench
from ._commands import COMMANDS, cmd_inspect, make_backend
from ._exits import (
    ENV_URL,
    EXIT_INTERRUPTED,
    EXIT_SOFTWARE,
    EXIT_TERMINATED,
    EXIT_USAGE,
    PROG,
    Exit,
    Terminated,
    exit_code,
)
from ._logging import log_to_stderr
from ._output import Console, Redactor

#: Commands that start a private embedded redis-server when no URL is given.
EMBEDDED = ("bench", "demo")


@contextmanager
def _server_urls(url: Optional[str], command: str, console: Console) -> Iterator[tuple[str, Optional[str]]]:
    """``(url, tcp_url)``: the given URL, or a private embedded redis-server's (bench/demo only), removed on exit.

    For ``bench`` the embedded server also listens on a loopback TCP port (password-protected), the
    drain-latency figure's TCP variant.
    """
    if url:
        yield url, None
        return
    if command not in EMBEDDED:
        raise Exit(EXIT_USAGE, f"{command} needs a Redis URL: pass --url or set ${ENV_URL}")
    server = EmbeddedServer(tcp=command == "bench")
    server.start()
    try:
        console.redact.add_url(server.url)
        where = server.socket_path + (f" and 127.0.0.1:{server.port}" if server.port else "")
        console.err(f"{PROG}: started a private redis-server (pid {server.pid}) at {where}")
        yield server.url, server.tcp_url
    finally:
        server.stop()


def _run(args: argparse.Namespace, console: Console) -> int:
    url = getattr(args, "url", None) or os.environ.get(ENV_URL) or None
    console.redact.add_url(url)
    if args.command == "inspect":
        return cmd_inspect(args, url, console)
    with _server_urls(url, args.command, console) as (server_url, tcp_url):
        if args.command == "bench":
            return cmd_bench(server_url, args, console, tcp_url=tcp_url)
        backend = make_backend(server_url, args, console)
        try:
            return COMMANDS[args.command](backend, args, console)
        finally:
            backend.close()


def main(argv: Optional[list[str]] = None) -> int:
    """Run the command line; returns the exit code (see the package docstring)."""
    console = Console(Redactor())
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help / --version
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    except Exit as exit_:  # a usage error
        return _leave(exit_, console)
    json_lines, level = getattr(args, "log_json", False), getattr(args, "log_level", "warning")
    with log_to_stderr(json_lines, level, console.redact), _sigterm_raises():
        return _guarded(args, console)


def _guarded(args: argparse.Namespace, console: Console) -> int:
    """``_run`` with every expected way out turned into an exit code and one line on stderr."""
    try:
        return _run(args, console)
    except Exit as exit_:
        return _leave(exit_, console)
    except KeyboardInterrupt:
        console.err(f"{PROG}: interrupted")
        return EXIT_INTERRUPTED
    except Terminated:
        console.err(f"{PROG}: terminated")
        return EXIT_TERMINATED
    except Exception as error:
        code, message = exit_code(error)
        console.err(f"{PROG}: error: {message}")
        if code == EXIT_SOFTWARE:
            if getattr(args, "log_level", "") == "debug":
                console.err(traceback.format_exc().rstrip())
            else:
                console.err(f"{PROG}: (run with --log-level debug for the traceback)")
        return code


def _leave(exit_: Exit, console: Console) -> int:
    if exit_.message:
        console.err(exit_.message if exit_.message.startswith(PROG) else f"{PROG}: error: {exit_.message}")
    return exit_.code


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM raises ``Terminated`` in the main thread while the block runs, so every ``finally`` runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _on_sigterm(signum: int, frame: Optional[FrameType]) -> Any:
    raise Terminated()
