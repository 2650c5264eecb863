"""The subcommands that talk to Redis through a backend: inspect, ping, get, wait, store, forget, demo."""

from __future__ import annotations

import argparse
import builtins
import json
import re
import threading
import time
import uuid
from typing import Any, Callable, Optional

from .. import FAILURE, RETRY, REVOKED, SUCCESS, RedisBackend, ResultTimeout, backend_from_url
from ._exits import ENV_URL, EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE, PROG, Exit
from ._output import Console, dumps, masked_params

# An unreachable server should fail a command in seconds, not after the library's 20 s retry budget.
CLI_RETRY_POLICY = {"max_retries": 2, "timeout": 5.0}
CLI_CONNECT_TIMEOUT = 10.0
EXCEPTION_STATES = frozenset({FAILURE, RETRY, REVOKED})
#: The module written for an exception type given without one that is not a builtin (``store ... --state FAILURE``).
DEFAULT_EXC_MODULE = "redisresults.cli"


def transport_options(args: argparse.Namespace) -> dict[str, Any]:
    master_name = getattr(args, "master_name", None)
    return {"master_name": master_name} if master_name else {}


def make_backend(url: str, args: argparse.Namespace, console: Console) -> RedisBackend:
    """The backend for one command: bounded retries and connect timeout, its passwords known to the redactor."""
    console.redact.add_url(url)
    options: dict[str, Any] = {"transport_options": {**transport_options(args), "retry_policy": CLI_RETRY_POLICY}}
    if "socket_connect_timeout" not in url:
        options["socket_connect_timeout"] = CLI_CONNECT_TIMEOUT
    backend = backend_from_url(url, **options)
    console.redact.add_params(backend.connparams)
    return backend


def cmd_inspect(args: argparse.Namespace, url: Optional[str], console: Console) -> int:
    target = args.target or url
    if not target:
        raise Exit(EXIT_USAGE, f"inspect needs a URL (argument, --url or ${ENV_URL})")
    console.redact.add_url(target)
    backend = backend_from_url(target, transport_options=transport_options(args))  # logs TLS warnings (stderr)
    try:
        console.redact.add_params(backend.connparams)
        report = {
            "backend": type(backend).__name__,
            "url": backend.as_uri(),
            "connparams": masked_params(backend.connparams),
            "warnings": list(backend.config.warnings),
        }
        console.out(dumps(report))
    finally:
        backend.close()
    return EXIT_OK


def cmd_ping(backend: RedisBackend, args: argparse.Namespace, console: Console) -> int:
    started = time.perf_counter()
    backend.client.ping()
    elapsed = (time.perf_counter() - started) * 1e3
    version = backend.client.info("server").get("redis_version", "?")
    console.out(f"PONG from {backend.as_uri()} (redis {version}) in {elapsed:.2f} ms")
    return EXIT_OK


def cmd_get(backend: RedisBackend, args: argparse.Namespace, console: Console) -> int:
    console.out(dumps(backend.get_task_meta(args.task_id)))
    return EXIT_OK


def _summary(meta: dict[str, Any]) -> str:
    result = meta.get("result")
    if meta.get("status") in EXCEPTION_STATES and isinstance(result, dict) and "exc_type" in result:
        message = result.get("exc_message")
        if isinstance(message, (list, tuple)):
            message = ", ".join(str(m) for m in message)
        return f"{result.get('exc_type')}: {message}"
    return dumps(result, indent=None)


def cmd_wait(backend: RedisBackend, args: argparse.Namespace, console: Console) -> int:
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
        console.out(dumps({tid: metas[tid] for tid in ids}))
    if timed_out:
        console.err(f"{PROG}: timeout: {len(missing)} of {len(ids)} result(s) not ready after {args.timeout}s: "
                    + " ".join(missing))
        return EXIT_TIMEOUT
    if any(metas[tid]["status"] != SUCCESS for tid in ids):
        return EXIT_FAILED
    return EXIT_OK


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def exception_document(text: str) -> dict[str, Any]:
    """``'Type: message'`` (or ``'pkg.mod.Type: message'``) as Celery's exception dict; nothing is imported."""
    name, sep, message = text.partition(":")
    name = name.strip()
    if not sep or not re.fullmatch(r"[A-Za-z_][\w.]*", name):
        name, message = "Exception", text
    module, _, type_name = name.rpartition(".")
    if not module:
        builtin = getattr(builtins, type_name, None)
        module = "builtins" if isinstance(builtin, type) and issubclass(builtin, BaseException) else DEFAULT_EXC_MODULE
    return {"exc_type": type_name, "exc_message": [message.strip()], "exc_module": module}


def cmd_store(backend: RedisBackend, args: argparse.Namespace, console: Console) -> int:
    """Store VALUE in ``--state`` (a bad state is the library's ConfigError: exit 64)."""
    state = args.state
    if state in (FAILURE, RETRY):
        backend.store_result(args.task_id, exception_document(args.value), state)
    elif state == REVOKED:
        backend.mark_as_revoked(args.task_id, reason=args.value)
    else:
        backend.store_result(args.task_id, _parse_value(args.value), state)
    console.out(dumps(backend.get_task_meta(args.task_id)))
    return EXIT_OK


def cmd_forget(backend: RedisBackend, args: argparse.Namespace, console: Console) -> int:
    backend.forget(args.task_id)
    console.out(f"forgot {args.task_id}")
    return EXIT_OK


def cmd_demo(backend: RedisBackend, args: argparse.Namespace, console: Console) -> int:
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
    console.out(f"{task_id}: {dumps(value, indent=None)} after {(time.perf_counter() - started) * 1e3:.1f} ms "
                f"(stored by another thread 50 ms in) via {backend.as_uri()}")
    backend.forget(task_id)
    return EXIT_OK


Command = Callable[[RedisBackend, argparse.Namespace, Console], int]
COMMANDS: dict[str, Command] = {
    "ping": cmd_ping, "get": cmd_get, "wait": cmd_wait, "store": cmd_store, "forget": cmd_forget, "demo": cmd_demo,
}
