"""Tests of the Celery drop-in (``redisresults.celery``), with real ``celery worker`` processes."""
