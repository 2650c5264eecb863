"""The Celery drop-in: ``app.conf.result_backend = "redisresults+redis://..."``.

A Celery app's own ``AsyncResult.get()``, ``then()``, ``ResultSet``/``GroupResult`` joins and chord joins then wait
on redisresults' one drainer per process (one Pub/Sub connection, one pool), while keys, documents, chords and the
worker side stay Celery's own code. Needs the ``celery`` extra (``pip install 'redisresults[celery]'``); ``import
redisresults`` never imports this package.

Forms: ``redisresults+redis://``, ``+rediss://``, ``+socket://``, ``+sentinel://``, ``+redis+cluster://``
(through the entry point ``redisresults`` in ``celery.result_backends``), ``redisresults://host...``, and without
the entry point ``redisresults.celery:CeleryBackend+redis://...``, or the class itself:
``Celery(backend=CeleryBackend)``.
"""

from __future__ import annotations

from ._backend import CeleryBackend, CeleryClusterBackend, CelerySentinelBackend, inner_url
from ._core import close_all

__all__ = ["CeleryBackend", "CeleryClusterBackend", "CelerySentinelBackend", "close_all", "inner_url"]

for _name in ("CeleryBackend", "CelerySentinelBackend", "CeleryClusterBackend"):
    globals()[_name].__module__ = "redisresults.celery"
del _name
