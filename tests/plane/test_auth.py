"""Tokens: the admin token's file and mode, service tokens' scope, and redaction in logs."""

from __future__ import annotations

import io
import logging
import os
import stat
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshkit.plane.auth import (
    Forbidden,
    Principal,
    RedactTokensFilter,
    TokenStore,
    Unauthenticated,
    parse_bearer,
    redact,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_admin_token_generated_once_with_private_modes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = TokenStore(data)
    token = store.ensure_admin_token()
    assert len(token) >= 40
    assert store.admin_token_path == data / "admin.token"
    assert mode(data) == 0o700
    assert mode(data / "admin.token") == 0o600
    assert (data / "admin.token").read_text().strip() == token
    assert str(data / "admin.token") in store.admin_token_source()
    assert token not in store.admin_token_source()
    # a second start (a new store) reads the same token instead of making another
    assert TokenStore(data).ensure_admin_token() == token
    assert not [p for p in data.iterdir() if p.name.endswith(".tmp")]


def test_admin_token_file_is_never_readable_by_others_even_with_a_loose_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        TokenStore(tmp_path / "d").ensure_admin_token()
    finally:
        os.umask(old)
    assert mode(tmp_path / "d" / "admin.token") == 0o600


def test_loose_admin_token_file_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "admin.token"
    path.write_text("x" * 43)
    path.chmod(0o644)
    assert TokenStore(tmp_path).ensure_admin_token() == "x" * 43
    assert mode(path) == 0o600


def test_env_admin_token_wins_and_writes_nothing(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "d", env_admin_token="s3cret-admin-token-123")
    assert store.ensure_admin_token() == "s3cret-admin-token-123"
    assert not (tmp_path / "d").exists()
    assert "MESHKIT_ADMIN_TOKEN" in store.admin_token_source()
    principal = store.authenticate("s3cret-admin-token-123")
    assert principal is not None and principal.is_admin


def test_short_env_admin_token_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^MESHKIT_ADMIN_TOKEN: must be at least 16"):
        TokenStore(None, env_admin_token="short")


def test_service_token_manages_only_its_services(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    token = store.create_service_token(["orders", "billing"], "orders-team")
    principal = store.authenticate(token)
    assert principal == Principal("orders-team", False, frozenset({"orders", "billing"}))
    assert principal.may_manage("orders")
    assert not principal.may_manage("users")
    # overwriting or removing another owner's instance of an allowed service is refused
    assert principal.may_replace("orders", None)
    assert principal.may_replace("orders", "orders-team")
    assert not principal.may_replace("orders", "someone-else")
    with pytest.raises(Forbidden):
        principal.require_manage("orders", owner="someone-else")
    with pytest.raises(Forbidden):
        principal.require_manage("users")
    admin = store.authenticate(store.ensure_admin_token())
    assert admin is not None and admin.may_replace("orders", "someone-else")


def test_only_the_hash_is_stored_and_the_file_is_private(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    token = store.create_service_token(["orders"], "t1")
    raw = (tmp_path / "tokens.json").read_bytes()
    assert token.encode() not in raw
    assert token[4:].encode() not in raw
    entry = orjson.loads(raw)["tokens"][0]
    assert set(entry) == {"name", "services", "created", "sha256"}
    assert mode(tmp_path / "tokens.json") == 0o600


def test_unknown_wrong_and_revoked_tokens_fail(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    token = store.create_service_token(["orders"], "t1")
    assert store.authenticate(None) is None
    assert store.authenticate("") is None
    assert store.authenticate(token + "x") is None
    assert store.authenticate(token[:-1]) is None
    assert store.revoke("t1") is True
    assert store.revoke("t1") is False
    assert store.authenticate(token) is None
    assert store.list() == []


def test_tokens_made_by_another_process_are_seen_without_restart(tmp_path: Path) -> None:
    server = TokenStore(tmp_path)
    server.ensure_admin_token()
    assert server.list() == []
    token = TokenStore(tmp_path).create_service_token(["orders"], "from-cli")  # the CLI's store
    principal = server.authenticate(token)
    assert principal is not None and principal.name == "from-cli"
    assert [t["name"] for t in server.list()] == ["from-cli"]
    TokenStore(tmp_path).revoke("from-cli")
    assert server.authenticate(token) is None


def test_in_memory_store_without_data_dir() -> None:
    store = TokenStore(None)
    admin = store.ensure_admin_token()
    assert store.admin_token_path is None
    token = store.create_service_token(["a"], "n")
    assert store.authenticate(token) is not None
    assert store.authenticate(admin) is not None


@pytest.mark.parametrize(
    ("services", "name", "field"),
    [
        (["Orders"], "t", "services"),
        ([], "t", "services"),
        (["ok"], "Bad Name", "name"),
        (["ok"], "", "name"),
    ],
)
def test_bad_token_requests_name_the_field(services: list[str], name: str, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        TokenStore(None).create_service_token(services, name)


def test_duplicate_token_name_is_refused() -> None:
    store = TokenStore(None)
    store.create_service_token(["a"], "n")
    with pytest.raises(ValueError, match="already exists"):
        store.create_service_token(["b"], "n")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer abc", "abc"),
        ("bearer   abc ", "abc"),
        ("BEARER abc", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer a b", None),
        ("", None),
        (None, None),
        ("abc", None),
    ],
)
def test_parse_bearer(header: str | None, expected: str | None) -> None:
    assert parse_bearer(header) == expected


@given(st.text(max_size=40))
def test_parse_bearer_refuses_any_whitespace_inside_the_token(token: str) -> None:
    parsed = parse_bearer(f"Bearer {token}")
    inner = token.strip()
    if inner and not any(c.isspace() for c in inner):
        assert parsed == inner
    else:
        assert parsed is None


def test_require_raises_unauthenticated_without_a_valid_token(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    with pytest.raises(Unauthenticated):
        store.require(None)
    with pytest.raises(Unauthenticated):
        store.require("Bearer nope")
    assert store.require(f"Bearer {store.ensure_admin_token()}").is_admin


def test_redact_masks_every_spelling_of_a_token() -> None:
    text = (
        "GET /x Authorization: Bearer eyJhbGciOi.abc-def_123 token=abcdef12345 "
        'svc mks_AbCdEfGh12345678 {"token": "zzz999"} Bearer%20qq11'
    )
    out = redact(text, ["literal-secret-1234"])
    for secret in ("eyJhbGciOi.abc-def_123", "abcdef12345", "mks_AbCdEfGh12345678", "zzz999", "qq11"):
        assert secret not in out
    assert "GET /x" in out
    assert redact("admin is literal-secret-1234 ok", ["literal-secret-1234"]) == "admin is [REDACTED] ok"


def test_logging_filter_keeps_tokens_out_of_log_output(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    admin = store.ensure_admin_token()
    service = store.create_service_token(["orders"], "t")
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactTokensFilter(store))
    logger = logging.getLogger("meshkit.test.redact")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("header was %s", f"Bearer {service}")
        logger.warning("admin token loaded: %s", admin)
        try:
            raise RuntimeError(f"bad token {admin}")
        except RuntimeError:
            logger.exception("request failed")
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert admin not in text and service not in text
    assert text.count("[REDACTED]") >= 3
    assert "request failed" in text and "RuntimeError" in text
