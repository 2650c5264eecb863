"""``redisresults bench``: the sizes from the options, progress on stderr, the table (or JSON) on stdout."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Optional

from .. import bench
from ._args import BENCH_SIZES
from ._exits import EXIT_FAILED, EXIT_OK, PROG
from ._output import Console, dumps


def bench_options(args: argparse.Namespace) -> bench.Options:
    """Full sizes, or ``quick()`` ones with ``--quick`` / ``$REDISRESULTS_BENCH_QUICK=1``; size options win."""
    given: dict[str, Any] = {field: getattr(args, field) for _, field, _ in BENCH_SIZES
                             if getattr(args, field) is not None}
    given["gevent"] = not args.no_gevent
    given["celery"] = not args.no_celery
    if args.quick or os.environ.get(bench.QUICK_ENV) == "1":
        return bench.Options.quick(**given)
    return bench.Options(**given)


def cmd_bench(url: str, args: argparse.Namespace, console: Console, tcp_url: Optional[str] = None) -> int:
    options = bench_options(args)
    tty = sys.stderr.isatty()

    def progress(message: str) -> None:
        if tty:
            sys.stderr.write(console.redact(f"\r\033[K{PROG} bench: {message}"))
            sys.stderr.flush()
        else:
            console.err(f"{PROG} bench: {message}")

    report = bench.run(url, options, progress, tcp_url=tcp_url)
    if tty:
        sys.stderr.write("\r\033[K")
    if args.json:
        console.out(dumps(report))
    else:
        env = report["environment"]
        console.out(f"redisresults bench on {env['cpus']} CPU(s) {env['cpu']}; Python {env['python']}, "
                    f"redis-py {env['redis_py']}, redis-server {env['redis_server']} ({env['server']})")
        console.out(bench.format_table(report))
    return EXIT_FAILED if args.strict and not report["passed"] else EXIT_OK
