"""Everything the CLI writes goes through here: secrets (passwords from URLs) are replaced by ``**``."""

from __future__ import annotations

import json
import re
import sys
from typing import Any, Optional
from urllib.parse import unquote


class Redactor:
    """Replaces every known secret (passwords from the URL) with ``**`` in all output."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()

    def add_url(self, url: Optional[str]) -> None:
        """The password of each ``scheme://user:password@host`` part (split as the URL parser does)."""
        if not url:
            return
        for part in url.split(";"):
            _, sep, rest = part.partition("://")
            if not sep:
                continue
            netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
            userinfo, at, _ = netloc.rpartition("@")
            if at and ":" in userinfo:
                self._add(userinfo.split(":", 1)[1])
            for found in re.finditer(r"(?i)[?&]password=([^&#]*)", part):
                self._add(found.group(1))

    def add_params(self, params: dict[str, Any]) -> None:
        for holder in [params, *params.get("hosts", [])]:
            password = holder.get("password")
            if isinstance(password, str):
                self._add(password)

    def _add(self, secret: str) -> None:
        # A safety net behind the masking done where values are printed; secrets shorter than 4
        # characters are left out, as replacing every "a" in the output would only garble it.
        for value in (secret, unquote(secret)):
            if len(value) >= 4 and value != "**":
                self.secrets.add(value)

    def __call__(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "**")
        return text


class Console:
    """Lines to the *current* stdout/stderr (tests swap them), redacted."""

    def __init__(self, redact: Redactor) -> None:
        self.redact = redact

    def out(self, text: str) -> None:
        sys.stdout.write(self.redact(text) + "\n")
        sys.stdout.flush()

    def err(self, text: str) -> None:
        sys.stderr.write(self.redact(text) + "\n")
        sys.stderr.flush()


def _jsonable(value: Any) -> Any:
    """For json.dumps: bytes and other non-JSON values (from msgpack/pickle results) as their repr."""
    return repr(value)


def dumps(value: Any, indent: Optional[int] = 2) -> str:
    return json.dumps(value, indent=indent, default=_jsonable, ensure_ascii=False)


def masked_params(params: dict[str, Any]) -> dict[str, Any]:
    """``connparams`` for printing: password ``**``, classes and enums by name."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key == "password" and value is not None:
            value = "**"
        elif key == "connection_class" and isinstance(value, type):
            value = f"{value.__module__}.{value.__qualname__}"
        elif key == "ssl_cert_reqs" and hasattr(value, "name"):
            value = value.name
        elif key == "hosts":
            value = [masked_params(host) for host in value]
        out[key] = value
    return out
