"""Parsing result-backend URLs into plain immutable values. Pure: no I/O, no redis import.

Every malformed part raises ``ConfigError`` naming it, so a bad URL fails when the backend
is built instead of at the first connect (redis-py and Celery pass unknown parts through).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import parse_qsl, unquote

from ._exceptions import ConfigError

TCP_SCHEMES = ("redis", "rediss")
SOCKET_SCHEMES = ("socket", "redis+socket", "unix")
SENTINEL_SCHEMES = ("sentinel",)
SCHEMES = TCP_SCHEMES + SOCKET_SCHEMES + SENTINEL_SCHEMES

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_HOST_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_IPV6_RE = re.compile(r"^\[[0-9A-Fa-f:.%A-Za-z]+\]$")


@dataclass(frozen=True)
class ParsedURL:
    """One URL split into its parts, percent-decoded. The password never shows in ``repr``."""

    scheme: str
    host: Optional[str] = None
    port: Optional[int] = None
    username: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)
    path: str = ""
    query: tuple[tuple[str, str], ...] = ()

    @property
    def query_dict(self) -> dict[str, str]:
        return dict(self.query)

    @property
    def is_socket(self) -> bool:
        return self.scheme in SOCKET_SCHEMES

    @property
    def is_tls(self) -> bool:
        return self.scheme == "rediss"


def scheme_of(url: str) -> str:
    """The lower-cased scheme of ``url``; ConfigError when there is none or it is not ours."""
    if not isinstance(url, str):
        raise ConfigError(f"result backend URL must be a str, got {type(url).__name__}")
    match = _SCHEME_RE.match(url)
    if not match:
        raise ConfigError(
            f"result backend URL has no scheme (expected one of: {', '.join(s + '://' for s in SCHEMES)})"
        )
    scheme = match.group(1).lower()
    if scheme not in SCHEMES:
        raise ConfigError(
            f"unsupported URL scheme {scheme!r}; accepted schemes: {', '.join(s + '://' for s in SCHEMES)}"
        )
    return scheme


def parse_url(url: str) -> ParsedURL:
    """Split one ``redis://``, ``rediss://``, ``socket://`` (etc.) or single ``sentinel://`` URL."""
    scheme = scheme_of(url)
    rest = url[len(scheme) + 3 :]
    if any(ch in rest for ch in "\r\n\t\x00 "):
        raise ConfigError("result backend URL contains whitespace or control characters")
    rest, _, fragment = rest.partition("#")
    if fragment:
        raise ConfigError("result backend URL must not have a #fragment")
    rest, _, raw_query = rest.partition("?")
    netloc, slash, raw_path = rest.partition("/")
    path = unquote(slash + raw_path) if slash else ""
    query = _parse_query(raw_query)

    userinfo, at, hostport = netloc.rpartition("@")
    if not at:
        userinfo, hostport = "", netloc
    username, password = _split_userinfo(userinfo) if at else (None, None)

    if scheme in SOCKET_SCHEMES:
        if hostport not in ("", "localhost"):
            raise ConfigError(
                f"a {scheme}:// URL names a socket path, not a host: write {scheme}:///path/to/redis.sock"
            )
        if not path or path == "/":
            raise ConfigError(f"a {scheme}:// URL needs the socket path, e.g. {scheme}:///var/run/redis/redis.sock")
        return ParsedURL(scheme, None, None, username, password, path, query)

    host, port = _split_hostport(hostport, scheme)
    return ParsedURL(scheme, host, port, username, password, path, query)


def split_sentinel_url(url: str) -> list[str]:
    """The ``;``-separated node URLs of a ``sentinel://`` URL (empty chunks ignored)."""
    if scheme_of(url) != "sentinel":
        raise ConfigError("not a sentinel:// URL")
    chunks = [chunk.strip() for chunk in url.split(";")]
    nodes = [chunk for chunk in chunks if chunk]
    for node in nodes:
        if "," in node.partition("?")[0]:
            raise ConfigError(
                "sentinel nodes must be separated by ';', not ',': "
                "write sentinel://h1:26379;sentinel://h2:26379;sentinel://h3:26379"
            )
        scheme = scheme_of(node)
        if scheme != "sentinel":
            raise ConfigError(f"every node of a sentinel URL must use sentinel://, got {scheme}://")
    if not nodes:
        raise ConfigError("a sentinel:// URL needs at least one node")
    return nodes


def path_db(path: str) -> Optional[int]:
    """The database number written as the URL path (``/3``), or None for an empty path."""
    stripped = path.strip("/")
    if stripped == "":
        return None
    if not stripped.isdigit() or not stripped.isascii():
        raise ConfigError(f"URL path must be a database number like /0, got {path!r}")
    return int(stripped)


def masked(url: str) -> str:
    """``url`` with every password replaced by ``**`` (nodes of a sentinel URL included)."""
    return ";".join(_mask_one(part) for part in url.split(";"))


def _mask_one(url: str) -> str:
    head, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc_end = len(rest)
    for stop in "/?#":
        pos = rest.find(stop)
        if pos != -1:
            netloc_end = min(netloc_end, pos)
    netloc, tail = rest[:netloc_end], rest[netloc_end:]
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:**@{hostport}"
    tail = re.sub(r"(?i)([?&]password=)[^&#]*", r"\1**", tail)
    return f"{head}://{netloc}{tail}"


def _split_userinfo(userinfo: str) -> tuple[Optional[str], Optional[str]]:
    user, colon, pw = userinfo.partition(":")
    username = unquote(user) or None
    password = (unquote(pw) or None) if colon else None
    if not colon and username is not None:
        # ``redis://secret@host``: redis-py and Celery treat a lone userinfo as the username.
        return username, None
    return username, password


def _split_hostport(hostport: str, scheme: str) -> tuple[Optional[str], Optional[int]]:
    if hostport == "":
        return None, None
    if hostport.startswith("["):
        end = hostport.find("]")
        if end == -1:
            raise ConfigError(f"URL host {hostport!r} has an unclosed IPv6 bracket")
        host, port_text = hostport[: end + 1], hostport[end + 1 :]
        if not _IPV6_RE.match(host) or not _is_ipv6(host[1:-1]):
            raise ConfigError(f"URL host {host!r} is not a valid IPv6 address")
        if port_text and not port_text.startswith(":"):
            raise ConfigError(f"unexpected text after the IPv6 host: {port_text!r}")
        port_text = port_text[1:] if port_text else ""
        host = host[1:-1]
    else:
        if hostport.count(":") > 1:
            hint = " (separate sentinel nodes with ';')" if scheme == "sentinel" else ""
            raise ConfigError(f"URL host and port {hostport!r} is malformed{hint}")
        host, _, port_text = hostport.partition(":")
        if "," in host or "," in port_text:
            raise ConfigError("URL host contains ','; separate sentinel nodes with ';'")
        host = unquote(host)
        if host and not _HOST_RE.match(host):
            raise ConfigError(f"URL host {host!r} is not a valid host name")
    port: Optional[int] = None
    if port_text != "" or hostport.endswith(":"):
        if not port_text.isdigit() or not port_text.isascii():
            raise ConfigError(f"URL port must be a number from 1 to 65535, got {port_text!r}")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ConfigError(f"URL port must be a number from 1 to 65535, got {port}")
    return host or None, port


def _is_ipv6(text: str) -> bool:
    """A bracketed host must be a real IPv6 address (``[zz]`` would only fail later, in DNS)."""
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _parse_query(raw: str) -> tuple[tuple[str, str], ...]:
    if not raw:
        return ()
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise ConfigError("URL query is malformed: expected name=value pairs separated by '&'") from None
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            raise ConfigError(f"URL query parameter {name!r} is given more than once")
        seen.add(name)
    return tuple(pairs)
