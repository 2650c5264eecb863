"""``redisresults``: inspect a backend URL, read, store, wait on and forget results, and run the benchmarks.

The URL comes from ``--url`` or the ``REDISRESULTS_URL`` environment variable. Without one, ``bench`` and
``demo`` start a private throwaway ``redis-server`` on a Unix socket in a temporary directory and remove it
at exit (Ctrl-C and SIGTERM included); the other commands need a URL.

This is the only place in redisresults that configures logging (structlog, to stderr; ``--log-json`` for
JSON lines). Passwords never appear in any output: not in ``inspect``, errors, logs or ``--help``.

Exit codes (sysexits.h where one fits):
  0   success
  1   a result is FAILURE or REVOKED (wait)
  2   timeout: a result was not ready in time (wait)
  64  usage error: bad arguments, URL or option
  65  bad data: a stored document that cannot be decoded, or a value that cannot be stored
  69  service unavailable: Redis unreachable, or no redis-server binary for the embedded server
  70  internal error
  130 interrupted (SIGINT); 143 terminated (SIGTERM)
"""

from __future__ import annotations

import argparse
import builtins
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, Callable, NoReturn, Optional
from urllib.parse import unquote

import redis.exceptions as rex
import structlog

from . import _meta
from ._exceptions import (
    BackendStoreError,
    ConfigError,
    ConnectionUnavailable,
    ContentDisallowed,
    DecodeError,
    EncodeError,
    RedisResultsError,
    ResultTimeout,
    remote_error_class,
)
from .backend import RedisBackend, backend_from_url

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_TIMEOUT = 2
EXIT_USAGE = 64
EXIT_DATAERR = 65
EXIT_UNAVAILABLE = 69
EXIT_SOFTWARE = 70
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

ENV_URL = "REDISRESULTS_URL"
PROG = "redisresults"
EPILOG = """\
The URL comes from --url or $REDISRESULTS_URL (e.g. redis://:PASSWORD@host:6379/0, rediss://...,
socket:///path/redis.sock, sentinel://h1:26379;sentinel://h2:26379). Without one, 'bench' and 'demo'
start a private redis-server on a Unix socket in a temp dir and remove it at exit.

exit codes: 0 ok, 1 a result failed or was revoked, 2 timeout, 64 usage error, 65 bad data (undecodable
stored document, value that cannot be stored), 69 service unavailable (Redis unreachable, no
redis-server binary), 70 internal error, 130 interrupted, 143 terminated.
"""
# An unreachable server should fail a command in seconds, not after the library's 20 s retry budget.
CLI_RETRY_POLICY = {"max_retries": 2, "timeout": 5.0}
CLI_CONNECT_TIMEOUT = 10.0


class _Exit(Exception):
    """Leave ``main`` with ``code``, printing ``message`` (already one line) to stderr."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so every ``finally`` (embedded server!) runs."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with usage errors exiting 64 (EX_USAGE) instead of 2, which means 'timeout' here."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise _Exit(EXIT_USAGE, f"{self.prog}: error: {message}")


# ---------------------------------------------------------------------------------------------- output


class _Redactor:
    """Replaces every known secret (passwords from the URL) with ``**`` in all output."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()

    def add_url(self, url: Optional[str]) -> None:
        """The password of each ``scheme://user:password@host`` part (split as the URL parser does)."""
        if not url:
            return
        for part in url.split(";"):
            _, sep, rest = part.partition("://")
            if not sep:
                continue
            netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
            userinfo, at, _ = netloc.rpartition("@")
            if at and ":" in userinfo:
                self._add(userinfo.split(":", 1)[1])
            for found in re.finditer(r"(?i)[?&]password=([^&#]*)", part):
                self._add(found.group(1))

    def add_params(self, params: dict[str, Any]) -> None:
        for holder in [params, *params.get("hosts", [])]:
            password = holder.get("password")
            if isinstance(password, str):
                self._add(password)

    def _add(self, secret: str) -> None:
        # A safety net behind the masking done where values are printed; secrets shorter than 4
        # characters are left out, as replacing every "a" in the output would only garble it.
        for value in (secret, unquote(secret)):
            if len(value) >= 4 and value != "**":
                self.secrets.add(value)

    def __call__(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "**")
        return text


class _Console:
    def __init__(self, redact: _Redactor) -> None:
        self.redact = redact

    def out(self, text: str) -> None:
        sys.stdout.write(self.redact(text) + "\n")
        sys.stdout.flush()

    def err(self, text: str) -> None:
        sys.stderr.write(self.redact(text) + "\n")
        sys.stderr.flush()


class _StderrLogger:
    """structlog's final logger: one rendered line to the *current* ``sys.stderr``, secrets redacted."""

    def __init__(self, redact: _Redactor) -> None:
        self._redact = redact

    def msg(self, message: str) -> None:
        sys.stderr.write(self._redact(message) + "\n")
        sys.stderr.flush()

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


def _configure_logging(json_lines: bool, level: str, redact: _Redactor) -> dict[str, Any]:
    """Send structlog output to stderr; returns the previous configuration so ``main`` can restore it."""
    previous = structlog.get_config()
    renderer: Any = structlog.processors.JSONRenderer() if json_lines else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=lambda *args: _StderrLogger(redact),
        cache_logger_on_first_use=False,
    )
    return previous


# ---------------------------------------------------------------------------------------------- arguments


def build_parser() -> ArgumentParser:
    common = ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, metavar="URL",
                        help=f"Redis URL (default: ${ENV_URL}); the password is never printed")
    common.add_argument("--master-name", default=argparse.SUPPRESS, metavar="NAME",
                        help="Sentinel master name, for sentinel:// URLs")
    common.add_argument("--log-json", action="store_true", default=argparse.SUPPRESS, help="log JSON lines to stderr")
    common.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default=argparse.SUPPRESS,
                        help="log level (default: warning)")

    parser = ArgumentParser(prog=PROG, description="Task results in Redis, from the command line.",
                            epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter, parents=[common])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help_text: str) -> ArgumentParser:
        parser: ArgumentParser = sub.add_parser(name, help=help_text, description=help_text, parents=[common],
                                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
        return parser

    p = add("inspect", "show the connection parameters a URL gives (password masked) and TLS warnings")
    p.add_argument("target", nargs="?", metavar="URL", help="the URL to inspect (default: --url / $REDISRESULTS_URL)")
    add("ping", "check that Redis answers")
    p = add("get", "print a result's stored document as JSON (PENDING when missing)")
    p.add_argument("task_id", metavar="ID")
    p = add("wait", "wait until results are ready; exit 0 all succeeded, 1 any failed/revoked, 2 timeout")
    p.add_argument("task_ids", nargs="+", metavar="ID")
    p.add_argument("--timeout", type=_seconds, default=None, metavar="S", help="give up after S seconds")
    p.add_argument("--json", action="store_true", help="print {id: document} as JSON")
    p = add("store", "store a result (and publish it to waiters)")
    p.add_argument("task_id", metavar="ID")
    p.add_argument("value", metavar="VALUE",
                   help="JSON if it parses, else a string; for FAILURE/RETRY an exception 'Type: message'")
    p.add_argument("--state", default=_meta.SUCCESS, type=str.upper, help="state to store (default: SUCCESS)")
    p = add("forget", "delete a stored result")
    p.add_argument("task_id", metavar="ID")
    add("demo", "store one result and wait for it (embedded redis-server when no URL)")
    p = add("bench", "benchmarks against raw redis-py on the same server (embedded redis-server when no URL)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--samples", type=_positive, default=1000, metavar="N", help="drain-latency samples (1000)")
    p.add_argument("--fanin", type=_positive, default=1000, metavar="N", help="fan-in waiting threads (1000)")
    p.add_argument("--fanin-greenlets", type=_positive, default=10_000, metavar="N",
                   help="fan-in waiting greenlets under gevent (10000)")
    p.add_argument("--burst", type=_positive, default=10_000, metavar="N", help="subscribe-burst waits (10000)")
    p.add_argument("--reject-limit", type=_positive, default=512 << 20, metavar="BYTES",
                   help="max_value_size for the rejection figure (512 MiB)")
    p.add_argument("--reject-max", type=_positive, default=1 << 30, metavar="BYTES",
                   help="largest value built for the rejection figure (1 GiB)")
    p.add_argument("--repeats", type=_positive, default=5, metavar="N", help="get(timeout) repeats (5)")
    p.add_argument("--no-gevent", action="store_true", help="skip the gevent runs (drain latency, greenlet fan-in)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a figure misses its target")
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"timeout must be a finite number >= 0, got {text!r}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


# ---------------------------------------------------------------------------------------------- commands


def _jsonable(value: Any) -> Any:
    """For json.dumps: bytes and other non-JSON values (from msgpack/pickle results) as their repr."""
    return repr(value)


def _dumps(value: Any, indent: Optional[int] = 2) -> str:
    return json.dumps(value, indent=indent, default=_jsonable, ensure_ascii=False)


def _transport_options(args: argparse.Namespace) -> dict[str, Any]:
    master_name = getattr(args, "master_name", None)
    return {"master_name": master_name} if master_name else {}


def _backend(url: str, args: argparse.Namespace, console: _Console) -> RedisBackend:
    console.redact.add_url(url)
    options: dict[str, Any] = {"transport_options": {**_transport_options(args), "retry_policy": CLI_RETRY_POLICY}}
    if "socket_connect_timeout" not in url:
        options["socket_connect_timeout"] = CLI_CONNECT_TIMEOUT
    backend = backend_from_url(url, **options)
    console.redact.add_params(backend.connparams)
    return backend


def _masked_params(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key == "password" and value is not None:
            value = "**"
        elif key == "connection_class" and isinstance(value, type):
            value = f"{value.__module__}.{value.__qualname__}"
        elif key == "ssl_cert_reqs" and hasattr(value, "name"):
            value = value.name
        elif key == "hosts":
            value = [_masked_params(host) for host in value]
        out[key] = value
    return out


def cmd_inspect(args: argparse.Namespace, url: Optional[str], console: _Console) -> int:
    target = args.target or url
    if not target:
        raise _Exit(EXIT_USAGE, f"inspect needs a URL (argument, --url or ${ENV_URL})")
    console.redact.add_url(target)
    backend = backend_from_url(target, transport_options=_transport_options(args))  # logs TLS warnings (stderr)
    try:
        console.redact.add_params(backend.connparams)
        report = {
            "backend": type(backend).__name__,
            "url": backend.as_uri(),
            "connparams": _masked_params(backend.connparams),
            "warnings": list(backend._config.warnings),
        }
        console.out(_dumps(report))
    finally:
        backend.close()
    return EXIT_OK


def cmd_ping(backend: RedisBackend, args: argparse.Namespace, console: _Console) -> int:
    started = time.perf_counter()
    backend.client.ping()
    elapsed = (time.perf_counter() - started) * 1e3
    version = backend.client.info("server").get("redis_version", "?")
    console.out(f"PONG from {backend.as_uri()} (redis {version}) in {elapsed:.2f} ms")
    return EXIT_OK


def cmd_get(backend: RedisBackend, args: argparse.Namespace, console: _Console) -> int:
    console.out(_dumps(backend.get_task_meta(args.task_id)))
    return EXIT_OK


def _summary(meta: dict[str, Any]) -> str:
    result = meta.get("result")
    if meta.get("status") in _meta.EXCEPTION_STATES and isinstance(result, dict) and "exc_type" in result:
        message = result.get("exc_message")
        if isinstance(message, (list, tuple)):
            message = ", ".join(str(m) for m in message)
        return f"{result.get('exc_type')}: {message}"
    return _dumps(result, indent=None)


def cmd_wait(backend: RedisBackend, args: argparse.Namespace, console: _Console) -> int:
    backend.client.ping()  # unreachable -> 69 now, not a silent wait
    ids = list(dict.fromkeys(args.task_ids))
    metas: dict[str, dict[str, Any]] = {}
    timed_out = False
    try:
        for task_id, meta in backend.ResultSet(ids).iter_native(timeout=args.timeout):
            metas[task_id] = meta
            if not args.json:
                console.out(f"{task_id} {meta['status']} {_summary(meta)}")
    except ResultTimeout:
        timed_out = True
    missing = [tid for tid in ids if tid not in metas]
    if missing:
        timed_out = True
        for tid, meta in zip(missing, backend.get_many_metas(missing)):
            metas[tid] = meta
    if args.json:
        console.out(_dumps({tid: metas[tid] for tid in ids}))
    if timed_out:
        console.err(f"{PROG}: timeout: {len(missing)} of {len(ids)} result(s) not ready after {args.timeout}s: "
                    + " ".join(missing))
        return EXIT_TIMEOUT
    if any(metas[tid]["status"] != _meta.SUCCESS for tid in ids):
        return EXIT_FAILED
    return EXIT_OK


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _exception_from(text: str) -> BaseException:
    """``'Type: message'`` (or ``'pkg.mod.Type: message'``) as a RemoteError-ish exception named Type."""
    name, sep, message = text.partition(":")
    name = name.strip()
    if not sep or not re.fullmatch(r"[A-Za-z_][\w.]*", name):
        name, message = "Exception", text
    module, _, type_name = name.rpartition(".")
    if not module:
        builtin = getattr(builtins, type_name, None)
        module = "builtins" if isinstance(builtin, type) and issubclass(builtin, BaseException) else "redisresults.cli"
    return remote_error_class(module, type_name)(message.strip())


def cmd_store(backend: RedisBackend, args: argparse.Namespace, console: _Console) -> int:
    state = args.state
    if not _meta.is_valid_state(state):
        raise _Exit(EXIT_USAGE, f"not a valid state: {state!r} (SUCCESS, FAILURE, REVOKED, STARTED, RETRY, ...)")
    if state == _meta.FAILURE:
        backend.mark_as_failure(args.task_id, _exception_from(args.value))
    elif state == _meta.RETRY:
        backend.mark_as_retry(args.task_id, _exception_from(args.value))
    elif state == _meta.REVOKED:
        backend.mark_as_revoked(args.task_id, reason=args.value)
    else:
        backend.store_result(args.task_id, _parse_value(args.value), state)
    console.out(_dumps(backend.get_task_meta(args.task_id)))
    return EXIT_OK


def cmd_forget(backend: RedisBackend, args: argparse.Namespace, console: _Console) -> int:
    backend.forget(args.task_id)
    console.out(f"forgot {args.task_id}")
    return EXIT_OK


def cmd_demo(backend: RedisBackend, args: argparse.Namespace, console: _Console) -> int:
    task_id = f"demo-{uuid.uuid4().hex[:12]}"
    result = backend.AsyncResult(task_id)
    worker = threading.Timer(0.05, backend.mark_as_done, args=(task_id, {"answer": 42}))
    worker.daemon = True
    started = time.perf_counter()
    worker.start()
    try:
        value = result.get(timeout=10)
    finally:
        worker.cancel()
        worker.join(5)
    console.out(f"{task_id}: {_dumps(value, indent=None)} after {(time.perf_counter() - started) * 1e3:.1f} ms "
                f"(stored by another thread 50 ms in) via {backend.as_uri()}")
    backend.forget(task_id)
    return EXIT_OK


def cmd_bench(url: str, args: argparse.Namespace, console: _Console) -> int:
    from . import _bench

    options = _bench.Options(samples=args.samples, fanin=args.fanin, fanin_greenlets=args.fanin_greenlets,
                             burst=args.burst, reject_limit=args.reject_limit,
                             reject_max=args.reject_max, overshoot_repeats=args.repeats, gevent=not args.no_gevent)
    tty = sys.stderr.isatty()

    def progress(message: str) -> None:
        if tty:
            sys.stderr.write(f"\r\033[K{PROG} bench: {message}")
            sys.stderr.flush()
        else:
            console.err(f"{PROG} bench: {message}")

    report = _bench.run(url, options, progress)
    if tty:
        sys.stderr.write("\r\033[K")
    if args.json:
        console.out(_dumps(report))
    else:
        env = report["environment"]
        console.out(f"redisresults bench on {env['cpus']} CPU(s) {env['cpu']}; Python {env['python']}, "
                    f"redis-py {env['redis_py']}, redis-server {env['redis_server']} ({env['server']})")
        console.out(_bench.format_table(report))
    return EXIT_FAILED if args.strict and not report["passed"] else EXIT_OK


Command = Callable[[RedisBackend, argparse.Namespace, _Console], int]
COMMANDS: dict[str, Command] = {
    "ping": cmd_ping, "get": cmd_get, "wait": cmd_wait, "store": cmd_store, "forget": cmd_forget, "demo": cmd_demo,
}


# ---------------------------------------------------------------------------------------------- main


@contextmanager
def _server_url(url: Optional[str], command: str, console: _Console) -> Iterator[str]:
    """The given URL, or (bench/demo only) a private embedded redis-server's, removed on the way out."""
    if url:
        yield url
        return
    if command not in ("bench", "demo"):
        raise _Exit(EXIT_USAGE, f"{command} needs a Redis URL: pass --url or set ${ENV_URL}")
    from ._embedded import EmbeddedServer

    server = EmbeddedServer()
    server.start()
    console.err(f"{PROG}: started a private redis-server (pid {server.pid}) at {server.socket_path}")
    try:
        yield server.url
    finally:
        server.stop()


def _run(args: argparse.Namespace, console: _Console) -> int:
    url = getattr(args, "url", None) or os.environ.get(ENV_URL) or None
    console.redact.add_url(url)
    if args.command == "inspect":
        return cmd_inspect(args, url, console)
    with _server_url(url, args.command, console) as server_url:
        if args.command == "bench":
            return cmd_bench(server_url, args, console)
        backend = _backend(server_url, args, console)
        try:
            return COMMANDS[args.command](backend, args, console)
        finally:
            backend.close()


def _exit_code(error: BaseException) -> tuple[int, str]:
    """The exit code and one-line message for an expected error."""
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, ConfigError):
        return EXIT_USAGE, str(error)
    if isinstance(error, ResultTimeout):
        return EXIT_TIMEOUT, str(error)
    if isinstance(error, (DecodeError, ContentDisallowed, EncodeError, BackendStoreError, rex.ResponseError)):
        return EXIT_DATAERR, text
    if isinstance(error, (ConnectionUnavailable, rex.ConnectionError, rex.TimeoutError, ConnectionError)):
        return EXIT_UNAVAILABLE, f"Redis unavailable: {text}"
    if isinstance(error, (TypeError, ValueError)) and not isinstance(error, RedisResultsError):
        return EXIT_USAGE, str(error)  # e.g. an empty task id
    return EXIT_SOFTWARE, f"internal error: {text}"


def main(argv: Optional[list[str]] = None) -> int:
    """Run the command line; returns the exit code (see the module docstring)."""
    redact = _Redactor()
    console = _Console(redact)
    parser = build_parser()
    previous_logging: Optional[dict[str, Any]] = None
    previous_sigterm: Any = None
    in_main_thread = threading.current_thread() is threading.main_thread()
    args: Optional[argparse.Namespace] = None
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exit_:  # --help / --version
            return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
        previous_logging = _configure_logging(getattr(args, "log_json", False),
                                              getattr(args, "log_level", "warning"), redact)
        if in_main_thread:
            previous_sigterm = signal.signal(signal.SIGTERM, _on_sigterm)
        return _run(args, console)
    except _Exit as exit_:
        if exit_.message:
            console.err(exit_.message if exit_.message.startswith(PROG) else f"{PROG}: error: {exit_.message}")
        return exit_.code
    except KeyboardInterrupt:
        console.err(f"{PROG}: interrupted")
        return EXIT_INTERRUPTED
    except _Terminated:
        console.err(f"{PROG}: terminated")
        return EXIT_TERMINATED
    except Exception as error:
        code, message = _exit_code(error)
        console.err(f"{PROG}: error: {message}")
        if code == EXIT_SOFTWARE:
            if args is not None and getattr(args, "log_level", "") == "debug":
                console.err(traceback.format_exc().rstrip())
            else:
                console.err(f"{PROG}: (run with --log-level debug for the traceback)")
        return code
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
        if previous_logging is not None:
            structlog.configure(**previous_logging)


def _on_sigterm(signum: int, frame: Optional[FrameType]) -> None:
    raise _Terminated()
