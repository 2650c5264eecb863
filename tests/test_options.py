"""The option table (``redisresults._options``): its shape, its validators, and the README table it documents.

The validators are pure functions, so they are tested as tables and by property tests: every input gives a
value or a ConfigError (never another exception), and a URL string means what the Python value means.
"""

from __future__ import annotations

import math
import re
import ssl
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Optional

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from redisresults import ConfigError
from redisresults._celery_conf import CELERY_IGNORED
from redisresults._config import OPTION_NAMES, SSL_KEYS, TRANSPORT_OPTION_KEYS
from redisresults._options import (
    CELERY_OPTIONS,
    DEFAULT_RETRY_POLICY,
    OPTIONS,
    QUERY_OPTIONS,
    Option,
    names_within,
    option,
)

README = Path(__file__).resolve().parent.parent / "README.md"
HEADER = ["option", "Celery setting", "URL query", "default", "notes"]

# --- the table's shape ------------------------------------------------------------------------------------------------


def test_rows_are_unique_and_frozen() -> None:
    keys = [(row.within, row.name) for row in OPTIONS]
    assert len(keys) == len(set(keys))
    queries = [query for row in OPTIONS for query in row.query]
    assert len(queries) == len(set(queries)), "a URL query name sets exactly one option"
    settings_ = [row.celery for row in OPTIONS if row.celery]
    assert len(settings_) == len(set(settings_)), "a Celery setting sets exactly one option"
    with pytest.raises(AttributeError):
        OPTIONS[0].default = 1  # type: ignore[misc]


def test_groups_are_options_taking_a_dict() -> None:
    groups = {row.within for row in OPTIONS if row.within is not None}
    assert groups == {"ssl", "transport_options"}
    for group in groups:
        assert option(group).within is None
    for row in OPTIONS:
        if row.within is not None:
            assert row.celery is None, "a dict key has no Celery setting of its own"
        assert row.doc and "\n" not in row.doc, f"{row.name}: one line for the README"


def test_derived_names() -> None:
    assert OPTION_NAMES == names_within(None)
    assert set(OPTION_NAMES) == {
        "host", "port", "db", "username", "password", "max_connections", "socket_timeout", "socket_connect_timeout",
        "retry_on_timeout", "socket_keepalive", "health_check_interval", "client_name", "ssl", "transport_options",
        "expires", "serializer", "accept", "max_value_size", "max_publish_size", "result_cache_max", "concurrency",
        "credential_provider",
    }
    assert SSL_KEYS == (
        "ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname", "ssl_ca_path",
    )
    assert set(TRANSPORT_OPTION_KEYS) == {
        "master_name", "min_other_sentinels", "sentinel_kwargs", "global_keyprefix", "retry_policy",
        "result_chord_ordered", "visibility_timeout",
    }
    assert QUERY_OPTIONS["virtual_host"] is option("db")
    assert QUERY_OPTIONS["ssl_ca_certs"] is option("ssl_ca_certs", "ssl")
    assert set(QUERY_OPTIONS) == {
        "db", "virtual_host", "socket_timeout", "socket_connect_timeout", "max_connections", "health_check_interval",
        "retry_on_timeout", "socket_keepalive", "client_name", *SSL_KEYS,
    }
    assert {name for name, row in CELERY_OPTIONS.items() if row.none_is_value} == {
        "redis_socket_timeout", "result_expires",
    }
    assert {row.name for row in OPTIONS if row.none_is_value} == {"expires", "max_publish_size", "socket_timeout"}
    with pytest.raises(KeyError):
        option("ssl_cert_reqs")  # a key of ssl, not a keyword argument


def test_celery_settings() -> None:
    assert CELERY_OPTIONS["redis_max_connections"] is option("max_connections")
    assert CELERY_OPTIONS["redis_backend_health_check_interval"] is option("health_check_interval")
    assert CELERY_OPTIONS["result_backend_transport_options"] is option("transport_options")
    assert all(name.startswith(("redis_", "result_")) for name in CELERY_OPTIONS)
    assert not set(CELERY_OPTIONS) & CELERY_IGNORED


@pytest.mark.parametrize("row", [row for row in OPTIONS if row.default is not None], ids=lambda row: row.name)
def test_defaults_are_valid_values(row: Option) -> None:
    value = row.validate(row.default)
    assert value == row.default
    if isinstance(row.default, Mapping):
        assert value is not row.default, "a mutable copy, never the shared default"


# --- the README table -------------------------------------------------------------------------------------------------


def shown_default(default: Any) -> str:
    """How the README writes a default."""
    if default is None:
        return "none"
    if isinstance(default, str):
        return f'`"{default}"`'
    if isinstance(default, tuple):
        return "`(" + "".join(f'"{item}", ' for item in default).rstrip(" ") + ")`"
    if isinstance(default, Mapping):
        assert not default, "write a non-empty default dict in the notes"
        return "`{}`"
    return f"`{default!r}`"


def expected_row(row: Option) -> list[str]:
    queries = [*row.query, *(query for key in names_within(row.name) for query in option(key, row.name).query)]
    return [
        f"`{row.name}`",
        f"`{row.celery}`" if row.celery else "—",
        ", ".join(f"`{query}`" for query in queries) or "—",
        shown_default(row.default),
        row.doc,
    ]


def expected_table() -> str:
    """The README table, as it should read (printed when the test fails, to paste in)."""
    rows = [HEADER, *(expected_row(row) for row in OPTIONS if row.within is None)]
    lines = ["| " + " | ".join(cells) + " |" for cells in rows]
    lines.insert(1, "|" + "---|" * len(HEADER))
    return "\n".join(lines)


def readme_table() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows: list[list[str]] = []
    for line in section.splitlines():
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break  # the first table of the section only
    return rows


def test_readme_configuration_table_is_the_option_table() -> None:
    rows = readme_table()
    hint = f"regenerate README.md's configuration table:\n{expected_table()}"
    assert rows[0] == HEADER, hint
    assert all(set(cell) <= {"-", ":"} for cell in rows[1]), hint
    body = {row[0]: row for row in rows[2:]}
    assert len(body) == len(rows) - 2, "one README row per option"
    expected = {f"`{row.name}`": expected_row(row) for row in OPTIONS if row.within is None}
    assert sorted(body) == sorted(expected), f"README rows for missing or unknown options\n{hint}"
    for name, cells in expected.items():
        assert body[name] == cells, f"{name}\n{hint}"
    assert [row[0] for row in rows[2:]] == list(expected), f"rows in table order\n{hint}"


def test_readme_names_every_dict_key() -> None:
    rows = {row[0]: row for row in readme_table()[2:]}
    for group in ("ssl", "transport_options"):
        for key in names_within(group):
            assert f"`{key}`" in " ".join(rows[f"`{group}`"]), f"README's {group} row does not name {key}"


# --- validators: tables -----------------------------------------------------------------------------------------------

ACCEPTED = [
    # (option, raw, validated)
    ("port", 1, 1), ("port", "65535", 65535), ("port", 6379, 6379),
    ("db", 0, 0), ("db", "3", 3), ("db", "/3", 3), ("db", "//3/", 3),
    ("max_connections", None, None), ("max_connections", "7", 7), ("max_connections", 1, 1),
    ("socket_timeout", None, None), ("socket_timeout", "1.5", 1.5), ("socket_timeout", 2, 2.0),
    ("socket_timeout", "1e3", 1000.0), ("socket_timeout", ".5", 0.5),
    ("health_check_interval", 0, 0.0), ("health_check_interval", "10", 10.0),
    ("retry_on_timeout", True, True), ("retry_on_timeout", 0, False), ("retry_on_timeout", "Yes", True),
    ("retry_on_timeout", "off", False), ("retry_on_timeout", "F", False),
    ("client_name", "", ""), ("client_name", None, None),
    ("host", "h", "h"),
    ("expires", None, None), ("expires", 0, None), ("expires", 1.2, 2), ("expires", "60", 60),
    ("expires", timedelta(hours=1), 3600), ("expires", timedelta(0), None),
    ("max_publish_size", None, None), ("max_publish_size", "1024", 1024),
    ("result_cache_max", -1, -1), ("result_cache_max", 0, 0),
    ("concurrency", "gevent", "gevent"),
    ("accept", ["pickle", "json"], ("json", "pickle")), ("accept", "json, msgpack", ("json", "msgpack")),
    ("accept", None, ("json",)),
    ("ssl", True, {"ssl_cert_reqs": ssl.CERT_REQUIRED}), ("ssl", False, {}), ("ssl", None, {}),
    ("ssl", {"ssl_cert_reqs": "none", "ssl_ca_certs": None, "ssl_check_hostname": "no"},
     {"ssl_cert_reqs": ssl.CERT_NONE, "ssl_check_hostname": False}),
    ("transport_options", None, {}),
    ("transport_options", {"global_keyprefix": "app", "min_other_sentinels": "1", "master_name": None},
     {"global_keyprefix": "app_", "min_other_sentinels": 1}),
    ("transport_options", {"retry_policy": {"max_retries": None, "timeout": "5"}},
     {"retry_policy": {**DEFAULT_RETRY_POLICY, "max_retries": math.inf, "timeout": 5.0}}),
    ("transport_options", {"visibility_timeout": 3600}, {"visibility_timeout": 3600}),
]


@pytest.mark.parametrize(("name", "raw", "expected"), ACCEPTED)
def test_validator_accepts(name: str, raw: Any, expected: Any) -> None:
    value = option(name).validate(raw)
    assert value == expected
    assert type(value) is type(expected)


REJECTED = [
    # (option, raw, the ConfigError must match)
    ("port", 0, "port must be a whole number from 1 to 65535, got 0"), ("port", "x", "port.*'x'"),
    ("port", 65536, "65536"), ("port", True, "port"), ("port", 6379.0, "port"), ("port", " 1", "port"),
    ("db", -1, r"db must be a database number.*-1"), ("db", "/", "db.*'/'"), ("db", "", "db"),
    ("db", "/0/1", "db"), ("db", "٣", "db"), ("db", "²", "db"), ("db", 1.0, "db"),
    ("max_connections", 0, ">= 1"), ("max_connections", "1.5", "'1.5'"),
    ("socket_timeout", 0, "positive"), ("socket_timeout", "0", "positive"), ("socket_timeout", "nan", "'nan'"),
    ("socket_timeout", "inf", "socket_timeout"), ("socket_timeout", "1e309", "socket_timeout"),
    ("socket_timeout", "1_0", "socket_timeout"), ("socket_timeout", "٣", "socket_timeout"),
    ("socket_timeout", False, "socket_timeout"), ("socket_connect_timeout", -0.5, "socket_connect_timeout"),
    ("health_check_interval", -1, "health_check_interval"),
    ("retry_on_timeout", "maybe", "true or false, got 'maybe'"), ("retry_on_timeout", 2, "retry_on_timeout"),
    ("retry_on_timeout", None, "retry_on_timeout"), ("socket_keepalive", "", "socket_keepalive"),
    ("host", "", "non-empty"), ("host", None, "host"), ("client_name", 5, "client_name"),
    ("expires", -1, "expires"), ("expires", "soon", "expires"), ("expires", timedelta(seconds=-1), "expires"),
    ("serializer", 5, "serializer"), ("serializer", "yaml-ish", "yaml-ish"),
    ("accept", [], "empty"), ("accept", 5, "accept"),
    ("concurrency", "fibers", "concurrency must be one of auto, thread, gevent"),
    ("max_value_size", 0, "max_value_size"), ("result_cache_max", -2, "result_cache_max"),
    ("credential_provider", "pkg.Provider", "credential_provider.*CredentialProvider"),
    ("ssl", "yes", "ssl must be a dict"), ("ssl", {"cert_reqs": 1}, "unknown ssl option.*cert_reqs"),
    ("ssl", {"ssl_cert_reqs": "Required"}, "ssl_cert_reqs.*'Required'"),
    ("ssl", {"ssl_cert_reqs": True}, "ssl_cert_reqs"), ("ssl", {"ssl_ca_certs": ""}, r"ssl\['ssl_ca_certs'\]"),
    ("transport_options", [], "transport_options"),
    ("transport_options", {"mastername": "x"}, "unknown transport_options option.*mastername"),
    ("transport_options", {"sentinel_kwargs": "x"}, "sentinel_kwargs"),
    ("transport_options", {"master_name": 5}, "master_name"),
    ("transport_options", {"retry_policy": {"retries": 1}}, "retries"),
    ("transport_options", {"retry_policy": {"timeout": -1}}, r"retry_policy\['timeout'\]"),
    ("transport_options", {"global_keyprefix": 5}, "global_keyprefix"),
]


@pytest.mark.parametrize(("name", "raw", "match"), REJECTED)
def test_validator_rejects(name: str, raw: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        option(name).validate(raw)


def test_label_names_the_source() -> None:
    with pytest.raises(ConfigError, match=r"^URL query parameter 'virtual_host' must be a database number"):
        option("db").validate("/", "URL query parameter 'virtual_host'")


def test_password_is_never_shown() -> None:
    with pytest.raises(ConfigError) as info:
        option("password").validate(["hunter2-secret"])
    assert "hunter2" not in str(info.value) and "password" in str(info.value)


# --- validators: properties -------------------------------------------------------------------------------------------

ANYTHING = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12), st.binary(max_size=4),
    st.lists(st.text(max_size=4), max_size=3), st.dictionaries(st.text(max_size=12), st.text(max_size=4), max_size=3),
    st.timedeltas(), st.sampled_from([ssl.CERT_NONE, ssl.CERT_REQUIRED, object(), (), {}, "/0", "1e3", "CERT_NONE"]),
)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(OPTIONS), ANYTHING)
def test_every_validator_returns_or_raises_config_error(row: Option, raw: Any) -> None:
    try:
        row.validate(raw)
    except ConfigError as error:
        assert row.name in str(error)


WHOLE_OPTIONS = [row for row in OPTIONS if row.name in ("port", "db", "max_connections", "max_value_size",
                                                        "max_publish_size", "result_cache_max", "min_other_sentinels")]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(WHOLE_OPTIONS), st.integers(-(10**20), 10**20))
def test_whole_number_text_means_the_number(row: Option, number: int) -> None:
    assert _outcome(row, str(number)) == _outcome(row, number)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([row for row in OPTIONS if row.name.endswith(("timeout", "interval")) and not row.within]),
    st.floats(allow_nan=True, allow_infinity=True),
)
def test_number_text_means_the_number(row: Option, number: float) -> None:
    assert _outcome(row, repr(number)) == _outcome(row, number)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["retry_on_timeout", "socket_keepalive"]), st.booleans(), st.sampled_from([str, int]))
def test_flag_text_means_the_flag(name: str, flag: bool, form: Any) -> None:
    text = str(form(flag))
    assert option(name).validate(text) is flag
    assert option(name).validate(text.upper()) is flag


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**6), st.sampled_from(["", "/", "//"]), st.sampled_from(["", "/"]))
def test_database_slashes_as_celery_strips_them(db: int, lead: str, tail: str) -> None:
    assert option("db").validate(f"{lead}{db}{tail}") == db


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=4, max_size=20))
def test_secret_never_in_the_message(secret: str) -> None:
    for raw in ([secret], {secret: secret}, (secret,), secret.encode("utf-8", "surrogatepass")):
        with pytest.raises(ConfigError) as info:
            option("password").validate(raw)
        template = f"password must be a str or None, got a value of type {type(raw).__name__} (hidden)"
        assume(secret not in template)  # a secret that is part of the message itself proves nothing
        assert str(info.value) == template


def _outcome(row: Option, raw: Any) -> tuple[str, Optional[Any]]:
    try:
        return "ok", row.validate(raw)
    except ConfigError as error:
        # the message quotes the raw value; compare only that it failed
        return "error", re.sub(r"got .*", "", str(error))
