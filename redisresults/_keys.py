"""Key and channel names, the same as Celery's Redis backend writes (channel = key)."""

from __future__ import annotations

TASK_KEYPREFIX = "celery-task-meta-"
GROUP_KEYPREFIX = "celery-taskset-meta-"


def check_id(kind: str, value: object) -> str:
    """Task and group ids are non-empty strings; anything else would write a shared, wrong key."""
    if not isinstance(value, str):
        raise TypeError(f"{kind} id must be a str, got {type(value).__name__}")
    if value == "":
        raise ValueError(f"{kind} id must not be empty")
    return value


def task_key(prefix: str, task_id: str) -> bytes:
    return (prefix + TASK_KEYPREFIX + task_id).encode("utf-8", "surrogatepass")


def group_key(prefix: str, group_id: str) -> bytes:
    return (prefix + GROUP_KEYPREFIX + group_id).encode("utf-8", "surrogatepass")

