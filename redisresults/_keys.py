"""Key and channel names, the same as Celery's Redis backend writes (channel = key)."""

from __future__ import annotations

import uuid

TASK_KEYPREFIX = "celery-task-meta-"
GROUP_KEYPREFIX = "celery-taskset-meta-"


def check_id(kind: str, value: object) -> str:
    """The id as the str its key is built from; use the returned value, not the argument.

    Task and group ids are non-empty strings. A ``uuid.UUID`` becomes ``str(uuid)`` (the dashed hex
    Celery's ids are), so ``celery-task-meta-<id>`` is the key Celery writes for it. Anything else
    raises: ``str(5)`` or ``repr(obj)`` would silently write a shared, wrong key.
    """
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str):
        raise TypeError(f"{kind} id must be a str (or uuid.UUID), got {type(value).__name__}")
    if value == "":
        raise ValueError(f"{kind} id must not be empty")
    return value


def task_key(prefix: str, task_id: str) -> bytes:
    return (prefix + TASK_KEYPREFIX + task_id).encode("utf-8", "surrogatepass")


def group_key(prefix: str, group_id: str) -> bytes:
    return (prefix + GROUP_KEYPREFIX + group_id).encode("utf-8", "surrogatepass")
