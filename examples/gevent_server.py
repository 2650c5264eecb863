"""A gevent web server whose requests wait on task results: one greenlet per request, one drainer.

    python examples/gevent_server.py --url redis://localhost:6379/0 --port 8000 --max-connections 10

``GET /result/<task_id>?timeout=S`` waits up to ``S`` seconds (default 10) and answers
``{"task_id": ..., "result": ...}``; 504 when the result is not ready in time, 500 with the error type
when the task failed. ``GET /stats`` shows the backend's counters. However many requests wait at
once, the process holds one Pub/Sub connection and a handful of pooled ones (``--max-connections``).

The process is monkey-patched before anything else is imported: redis-py's sockets must be
gevent's, or one waiting request would freeze every other.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402 - after monkey-patching, on purpose
import json  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from typing import Any, Callable, Iterable, Optional, Sequence  # noqa: E402
from urllib.parse import parse_qs  # noqa: E402

import gevent  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

import redisresults  # noqa: E402

StartResponse = Callable[..., Any]
_RESULT_PATH = re.compile(r"/result/([^/]+)")
_STATUS = {
    200: "200 OK",
    400: "400 Bad Request",
    404: "404 Not Found",
    500: "500 Internal Server Error",
    503: "503 Service Unavailable",
    504: "504 Gateway Timeout",
}


def _reply(start_response: StartResponse, code: int, body: dict[str, Any]) -> Iterable[bytes]:
    data = json.dumps(body, default=repr).encode()
    start_response(_STATUS[code], [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def make_app(backend: redisresults.RedisBackend, default_timeout: float = 10.0) -> Callable[..., Iterable[bytes]]:
    """The WSGI application: each request is a greenlet blocking in ``AsyncResult.get``."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "GET":
            return _reply(start_response, 404, {"error": "not found"})
        if path == "/stats":
            return _reply(start_response, 200, backend.stats())
        match = _RESULT_PATH.fullmatch(path)
        if match is None:
            return _reply(start_response, 404, {"error": "not found"})
        task_id = match.group(1)
        query = parse_qs(environ.get("QUERY_STRING", ""))
        try:
            timeout = float(query["timeout"][0]) if "timeout" in query else default_timeout
        except ValueError:
            return _reply(start_response, 400, {"task_id": task_id, "error": "timeout must be a number"})
        result = backend.AsyncResult(task_id)
        try:
            value = result.get(timeout=timeout, propagate=False)
        except redisresults.ResultTimeout:
            return _reply(start_response, 504, {"task_id": task_id, "error": "ResultTimeout", "timeout": timeout})
        except redisresults.RedisResultsError as error:  # Redis unreachable, drainer stopped, bad document
            return _reply(
                start_response, 503, {"task_id": task_id, "error": type(error).__name__, "message": str(error)}
            )
        if isinstance(value, BaseException) and not result.successful():
            return _reply(
                start_response,
                500,
                {"task_id": task_id, "state": result.state, "error": type(value).__name__, "message": str(value)},
            )
        return _reply(start_response, 200, {"task_id": task_id, "result": value})

    return app


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://localhost:6379/0", help="the result backend URL")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed at start)")
    parser.add_argument("--max-connections", type=int, default=10, help="the Redis connection pool's limit")
    parser.add_argument("--client-name", default="redisresults-gevent-server", help="CLIENT SETNAME for Redis")
    parser.add_argument("--backlog", type=int, default=2048, help="listen backlog (many clients connect at once)")
    parser.add_argument("--timeout", type=float, default=10.0, help="default wait when ?timeout= is absent")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    backend = redisresults.backend_from_url(
        args.url, max_connections=args.max_connections, client_name=args.client_name, concurrency="gevent"
    )
    server = WSGIServer((args.host, args.port), make_app(backend, args.timeout), backlog=args.backlog, log=None)
    server.start()
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, server.stop)
    print(f"listening on http://{server.server_host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    finally:
        backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
