"""The benchmark's helper processes; stdout carries their protocol ("ready", one JSON line), logs go to stderr.

The server's URL comes in ``$REDISRESULTS_URL`` (a command line is visible to every local user):
``python -m redisresults.bench store PREFIX COUNT``: the storing process of the fan-in figure;
``python -m gevent.monkey --module redisresults.bench drain SAMPLES``: drain latency under gevent;
``python -m gevent.monkey --module redisresults.bench fanin COUNT ROUNDS``: fan-in with greenlets;
``python -m gevent.monkey --module redisresults.bench celery-get SAMPLES``: Celery's fresh get() under gevent
(the worker's queue and key prefix in ``$RRBENCH_CELERY_QUEUE`` / ``$RRBENCH_CELERY_PREFIX``).
"""

from __future__ import annotations

import json
import logging
import os
import sys

from ._celery import celery_get
from ._common import URL_ENV
from ._drain import drain_latency
from ._fanin import fan_in, store_process

USAGE = (f"usage: ${URL_ENV}=URL python -m redisresults.bench store PREFIX COUNT | drain SAMPLES | fanin COUNT ROUNDS"
         " | celery-get SAMPLES")


def main(argv: list[str]) -> int:
    # This process is ours: it may configure logging (warnings and up, to stderr, away from the protocol).
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    command, args = (argv[0], argv[1:]) if argv else ("", [])
    url = os.environ.get(URL_ENV, "")
    if url and command == "store" and len(args) == 2:
        store_process(url, args[0], int(args[1]))
        return 0
    if url and command == "drain" and len(args) == 1:
        print(json.dumps(drain_latency(url, int(args[0]))))
        return 0
    if url and command == "fanin" and len(args) == 2:
        print(json.dumps(fan_in(url, int(args[0]), rounds=int(args[1]))))
        return 0
    if url and command == "celery-get" and len(args) == 1:
        print(json.dumps(celery_get(url, int(args[0]))))
        return 0
    print(USAGE, file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
