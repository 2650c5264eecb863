"""Parsing result-backend URLs into plain immutable values. Pure: no I/O.

Every malformed part raises ``ConfigError`` naming it, so a bad URL fails when the backend
is built instead of at the first connect (redis-py and Celery pass unknown parts through).
Port and database numbers are checked by their rows of the option table, like keyword options.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import parse_qsl, unquote

from ._exceptions import ConfigError
from ._options import option

TCP_SCHEMES = ("redis", "rediss")
SOCKET_SCHEMES = ("socket", "redis+socket", "unix")
SENTINEL_SCHEMES = ("sentinel",)
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SCHEMES = TCP_SCHEMES + SOCKET_SCHEMES + SENTINEL_SCHEMES + CLUSTER_SCHEMES

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
        return self.scheme in ("rediss", "rediss+cluster")


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

    userinfo, hostport = _split_netloc(netloc)
    username, password = _split_userinfo(userinfo)

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


def split_cluster_url(url: str) -> list[str]:
    """The ``;``-separated startup-node URLs of a ``redis+cluster://`` (or ``rediss+cluster://``) URL."""
    first = scheme_of(url)
    if first not in CLUSTER_SCHEMES:
        raise ConfigError("not a redis+cluster:// URL")
    nodes = [chunk.strip() for chunk in url.split(";") if chunk.strip()]
    for node in nodes:
        if "," in node.partition("?")[0]:
            raise ConfigError(
                "cluster startup nodes must be separated by ';', not ',': "
                f"write {first}://h1:7000;{first}://h2:7001"
            )
        scheme = scheme_of(node)
        if scheme != first:
            raise ConfigError(f"every node of a {first}:// URL must use {first}://, got {scheme}://")
    return nodes


def path_db(path: str) -> Optional[int]:
    """The database number written as the URL path (``/3``), or None for an empty path (``/`` too, as Celery)."""
    if path.strip("/") == "":
        return None
    number: int = option("db").validate(path, "URL path")
    return number


def passwords(url: str) -> tuple[str, ...]:
    """Every password ``url`` carries (userinfo of each node, ``?password=``), as written and decoded.

    For redacting output: split exactly as ``parse_url`` splits, so nothing it would use is missed.
    """
    found: list[str] = []
    for part in url.split(";"):
        _, sep, rest = part.partition("://")
        if not sep:
            continue
        userinfo, _ = _split_netloc(_netloc_of(rest)[0])
        if userinfo is not None and ":" in userinfo:
            found.append(userinfo.split(":", 1)[1])
        found.extend(match.group(1) for match in re.finditer(r"(?i)[?&]password=([^&#]*)", rest))
    return tuple(dict.fromkeys(secret for raw in found if raw for secret in (raw, unquote(raw))))


def masked(url: str) -> str:
    """``url`` with every password replaced by ``**`` (nodes of a sentinel URL included)."""
    return ";".join(_mask_one(part) for part in url.split(";"))


def _mask_one(url: str) -> str:
    head, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, tail = _netloc_of(rest)
    userinfo, hostport = _split_netloc(netloc)
    if userinfo is not None and ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:**@{hostport}"
    tail = re.sub(r"(?i)([?&]password=)[^&#]*", r"\1**", tail)
    return f"{head}://{netloc}{tail}"


def _netloc_of(rest: str) -> tuple[str, str]:
    """``rest`` (after ``scheme://``) split into the netloc and everything from the first ``/``, ``?`` or ``#``."""
    match = re.search(r"[/?#]", rest)
    end = match.start() if match else len(rest)
    return rest[:end], rest[end:]


def _split_netloc(netloc: str) -> tuple[Optional[str], str]:
    """``(raw userinfo or None, host[:port])``; the last ``@`` ends the userinfo (a password may hold ``@``)."""
    userinfo, at, hostport = netloc.rpartition("@")
    return (userinfo, hostport) if at else (None, netloc)


def _split_userinfo(userinfo: Optional[str]) -> tuple[Optional[str], Optional[str]]:
    """Percent-decoded ``(username, password)``; empty parts are None (Celery keeps the setting then)."""
    if userinfo is None:
        return None, None
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
            hint = " (separate cluster nodes with ';')" if scheme in CLUSTER_SCHEMES else hint
            raise ConfigError(f"URL host and port {hostport!r} is malformed{hint}")
        host, _, port_text = hostport.partition(":")
        if "," in host or "," in port_text:
            raise ConfigError("URL host contains ','; separate sentinel nodes with ';'")
        host = unquote(host)
        if host and not _HOST_RE.match(host):
            raise ConfigError(f"URL host {host!r} is not a valid host name")
    port: Optional[int] = None
    if port_text != "" or hostport.endswith(":"):
        port = option("port").validate(port_text, "URL port")
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
