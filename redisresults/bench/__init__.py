"""The benchmark figures, each measured side by side against raw redis-py on the same server, same run.

The raw baseline is what a careful hand-written client does: one thread stores with ``SET key value
EX n`` + ``PUBLISH`` in a MULTI pipeline, one thread reads a redis-py ``PubSub`` and sets the
``threading.Event`` a waiter blocks on (after ``json.loads``, as any real client must); a burst of
waits is SUBSCRIBE-all, every confirmation read, one MGET. Ours and raw samples are interleaved so
drift (CPU frequency, other load) hits both alike, and every ratio is also computed over at least 5
blocks of the run, whose lowest and highest are printed beside it.

Only the public API of redisresults is used. ``redisresults bench`` prints the table (or JSON);
``benchmarks/`` runs the same figures under pytest-benchmark. Helper processes (the URL in
``$REDISRESULTS_URL``, never on a command line): ``python -m redisresults.bench store|drain|fanin ...``
(the fan-in storer; the gevent runs under ``python -m gevent.monkey --module redisresults.bench``), and
``celery-get`` (Celery's fresh get() under gevent). The Celery figure (``figure_celery``: stock Celery's client
against the drop-in's, on one real ``celery worker``) needs the ``bench-celery`` extra; without it, it is empty.
"""

from __future__ import annotations

from ._burst import figure_burst
from ._celery import figure_celery
from ._common import QUICK_ENV, BenchError, Options
from ._drain import figure_drain
from ._fanin import figure_fan_in
from ._limits import figure_overshoot, figure_reject
from ._memory import figure_memory
from ._ready import figure_ready
from ._report import FIGURES, environment, format_table, run

__all__ = [
    "FIGURES",
    "QUICK_ENV",
    "BenchError",
    "Options",
    "environment",
    "figure_burst",
    "figure_celery",
    "figure_drain",
    "figure_fan_in",
    "figure_memory",
    "figure_overshoot",
    "figure_ready",
    "figure_reject",
    "format_table",
    "run",
]
