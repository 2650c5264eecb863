"""The argument parser: every subcommand and option, with usage errors exiting 64 instead of argparse's 2."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from .. import SUCCESS
from ._exits import ENV_URL, EXIT_USAGE, PROG, Exit
from ._logging import LEVELS

EPILOG = """\
The URL comes from --url or $REDISRESULTS_URL (e.g. redis://:PASSWORD@host:6379/0, rediss://...,
socket:///path/redis.sock, sentinel://h1:26379;sentinel://h2:26379). Without one, 'bench' and 'demo'
start a private redis-server on a Unix socket in a temp dir and remove it at exit.

exit codes: 0 ok, 1 a result failed or was revoked, 2 timeout, 64 usage error, 65 bad data (undecodable
stored document, value that cannot be stored), 69 service unavailable (Redis unreachable, no
redis-server binary), 70 internal error, 130 interrupted, 143 terminated.
"""

#: Sizes of ``bench`` that have an option: (option, Options field, help). Unset -> the full run's (or --quick's).
BENCH_SIZES = (
    ("--samples", "samples", "drain-latency samples per transport (1000; --quick 50)"),
    ("--fanin", "fanin", "fan-in waiting threads (1000; --quick 50)"),
    ("--fanin-greenlets", "fanin_greenlets", "fan-in waiting greenlets under gevent (10000; --quick 200)"),
    ("--burst", "burst", "new waits in each subscribe burst (10000; --quick 500)"),
    ("--ready", "ready", "get() calls per side on stored results (2000; --quick 200)"),
    ("--memory", "memory", "pending waits traced for memory (1000; --quick 50)"),
    ("--blocks", "blocks", "blocks each ratio's spread is computed over (5)"),
    ("--reject-limit", "reject_limit", "max_value_size in bytes for the rejection figure (512 MiB; --quick 1 MiB)"),
    ("--reject-max", "reject_max", "largest value built for the rejection figure, bytes (1 GiB; --quick 4 MiB)"),
    ("--repeats", "overshoot_repeats", "get(timeout) repeats (5; --quick 1)"),
)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with usage errors exiting 64 (EX_USAGE) instead of 2, which means 'timeout' here."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise Exit(EXIT_USAGE, f"{self.prog}: error: {message}")


def build_parser() -> ArgumentParser:
    common = ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, metavar="URL",
                        help=f"Redis URL (default: ${ENV_URL}); the password is never printed")
    common.add_argument("--master-name", default=argparse.SUPPRESS, metavar="NAME",
                        help="Sentinel master name, for sentinel:// URLs")
    common.add_argument("--log-json", action="store_true", default=argparse.SUPPRESS, help="log JSON lines to stderr")
    common.add_argument("--log-level", choices=LEVELS, default=argparse.SUPPRESS, help="log level (default: warning)")

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
    p.add_argument("--timeout", type=seconds, default=None, metavar="S", help="give up after S seconds")
    p.add_argument("--json", action="store_true", help="print {id: document} as JSON")
    p = add("store", "store a result (and publish it to waiters)")
    p.add_argument("task_id", metavar="ID")
    p.add_argument("value", metavar="VALUE",
                   help="JSON if it parses, else a string; for FAILURE/RETRY an exception 'Type: message'")
    p.add_argument("--state", default=SUCCESS, type=str.upper, help="state to store (default: SUCCESS)")
    p = add("forget", "delete a stored result")
    p.add_argument("task_id", metavar="ID")
    add("demo", "store one result and wait for it (embedded redis-server when no URL)")
    p = add("bench", "benchmarks against raw redis-py on the same server (embedded redis-server when no URL)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes, a run of seconds (also $REDISRESULTS_BENCH_QUICK=1); size options still apply")
    for option, field, help_text in BENCH_SIZES:
        metavar = "BYTES" if option.startswith("--reject") else "N"
        p.add_argument(option, dest=field, type=positive, default=None, metavar=metavar, help=help_text)
    p.add_argument("--no-gevent", action="store_true", help="skip the gevent runs (drain latency, greenlet fan-in)")
    p.add_argument("--no-celery", action="store_true", help="skip the Celery figures (drop-in against stock Celery)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a figure misses its target")
    return parser


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"timeout must be a finite number >= 0, got {text!r}")
    return value


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value
