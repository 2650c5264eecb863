"""The one atomic write: SET with expiry + PUBLISH, refusing to replace a stored SUCCESS.

Celery reads the key, decodes it, then writes in a MULTI (two round trips, a race, and the
payload sent twice). Here one server-side script decides and writes, and the payload crosses
the network once. Documents above ``max_publish_size`` are stored in full but announced with a
small reference message, so a huge result never overflows a subscriber's output buffer.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import redis
import redis.exceptions as rex

from ._config import Config
from ._exceptions import BackendStoreError
from ._log import get_logger
from ._retry import call_with_retry

log = get_logger()

# KEYS[1] = key (also the channel); ARGV[1] = document; ARGV[2] = ttl seconds ("0" = none);
# ARGV[3] = message to publish ("" = the document itself). Returns 1 when written, 0 when the
# stored document is a SUCCESS (left untouched, nothing published).
STORE_SCRIPT = """
local head = redis.call('GETRANGE', KEYS[1], 0, 255)
if head ~= '' then
  local status = nil
  if string.sub(head, 1, 1) == '{' then
    status = string.match(head, '"status"%s*:%s*"([^"]*)"')
  end
  if status == nil then
    local at = string.find(head, 'status', 1, true)
    if at and string.find(string.sub(head, at + 6, at + 16), 'SUCCESS', 1, true) then
      status = 'SUCCESS'
    end
  end
  if status == 'SUCCESS' then return 0 end
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[1])
end
if ARGV[3] == '' then
  redis.call('PUBLISH', KEYS[1], ARGV[1])
else
  redis.call('PUBLISH', KEYS[1], ARGV[3])
end
return 1
"""

# Redis Cluster: the same script, announced on the key's *shard* channel (same slot as the key, so the script
# stays legal on every node; classic PUBLISH is a separate namespace that SSUBSCRIBErs never see).
SHARDED_STORE_SCRIPT = STORE_SCRIPT.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'")

REF_STATE = "STORED"
REF_FIELD = "redisresults_ref"
# Redis refuses to lower proto-max-bulk-len below 1 MB, so smaller payloads never need the lookup.
_MIN_SERVER_BULK = 1024 * 1024


def reference_message(task_id: str, state: str, size: int) -> bytes:
    """A small Celery-shaped document announcing a stored result too large to publish.

    Its status is a non-ready state, so a Celery client ignores it instead of resolving with a
    wrong value; redisresults waiters read the key when they see ``redisresults_ref``.
    """
    doc = {
        "status": REF_STATE,
        "result": None,
        "traceback": None,
        "children": None,
        "date_done": None,
        REF_FIELD: {"state": state, "size": size},
        "task_id": task_id,
    }
    return json.dumps(doc).encode("ascii")


def too_large(size: int, limit: int, *, task_id: Optional[str], state: Optional[str], what: str) -> BackendStoreError:
    return BackendStoreError(
        f"value too large for Redis backend: {what} is {size} bytes, the limit is {limit} bytes",
        state=state,
        task_id=task_id,
    )


def check_raw_size(result: Any, limit: int, *, task_id: str, state: str) -> None:
    """O(1) early rejection: an encoding is never shorter than a raw str/bytes value."""
    if isinstance(result, (str, bytes, bytearray, memoryview)):
        size = result.nbytes if isinstance(result, memoryview) else len(result)
        if size > limit:
            raise too_large(size, limit, task_id=task_id, state=state, what="the raw result")


class ServerLimit:
    """The server's ``proto-max-bulk-len``, looked up once and only for payloads over 1 MB."""

    def __init__(self) -> None:
        self._value: Optional[int] = None
        self._known = False

    def get(self, client: redis.Redis) -> Optional[int]:
        if not self._known:
            self.refresh(client)
        return self._value

    def refresh(self, client: redis.Redis) -> None:
        try:
            reply = client.config_get("proto-max-bulk-len")
            value = reply.get("proto-max-bulk-len") if isinstance(reply, dict) else None
            self._value = int(value) if value is not None else None
        except (rex.ResponseError, rex.NoPermissionError, ValueError):
            self._value = None  # CONFIG is often disabled on managed servers; Redis's own limit then applies.
        self._known = True


def check_payload_size(
    payload: bytes,
    limit: int,
    server: ServerLimit,
    client: redis.Redis,
    *,
    task_id: Optional[str],
    state: Optional[str],
) -> None:
    """Reject a document over ``max_value_size`` or the server's bulk limit before any byte is sent."""
    size = len(payload)
    if size > limit:
        raise too_large(size, limit, task_id=task_id, state=state, what="the encoded document")
    if size > _MIN_SERVER_BULK:
        server_limit = server.get(client)
        if server_limit is not None and size > server_limit:
            what = "the encoded document (server proto-max-bulk-len)"
            raise too_large(size, server_limit, task_id=task_id, state=state, what=what)


def is_bulk_rejection(error: BaseException) -> bool:
    """A reply or drop that means the server refused the payload's size (never worth a retry)."""
    text = str(error).lower()
    return "protocol error" in text or "invalid bulk length" in text or "max-bulk" in text


def store(
    client: redis.Redis,
    script: Any,
    key: bytes,
    payload: bytes,
    config: Config,
    server: ServerLimit,
    *,
    task_id: Optional[str],
    state: Optional[str],
) -> bool:
    """Run the store script once (retried if transient); False when a stored SUCCESS was left untouched.

    Sizes are checked before any byte is sent; a document over ``max_publish_size`` is stored in
    full but announced by a reference message.
    """
    check_payload_size(payload, config.max_value_size, server, client, task_id=task_id, state=state)
    message = b""
    if config.max_publish_size is not None and len(payload) > config.max_publish_size:
        message = reference_message(task_id or "", state or "", len(payload))
    ttl = config.expires or 0

    def attempt() -> Any:
        try:
            return script(keys=[key], args=[payload, ttl, message], client=client)
        except (rex.ConnectionError, rex.ResponseError) as error:
            if len(payload) > _MIN_SERVER_BULK and (
                is_bulk_rejection(error) or _cut_off_by_live_server(client, server, error)
            ):
                server.refresh(client)
                raise too_large(len(payload), config.max_value_size, task_id=task_id, state=state,
                                what="the encoded document (refused by the server)") from error
            raise

    return bool(call_with_retry(attempt, config.retry_policy, what=f"storing {key.decode('utf-8', 'replace')}"))


def _cut_off_by_live_server(client: redis.Redis, server: ServerLimit, error: BaseException) -> bool:
    """A big write cut off (broken pipe) while the server still answers PING, its bulk limit unknown (CONFIG
    GET denied): the server refused the size and closed the connection, so a retry would fail the same way."""
    if not isinstance(error, rex.ConnectionError) or server.get(client) is not None:
        return False
    try:
        return bool(client.ping())
    except (rex.RedisError, OSError):
        return False
