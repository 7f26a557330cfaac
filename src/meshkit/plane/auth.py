"""Bearer-token authentication for the control plane: one admin token, per-service tokens.

Every endpoint that changes state or acts (register, deregister, configure, call, enqueue)
needs `Authorization: Bearer <token>`. The admin token comes from `MESHKIT_ADMIN_TOKEN` or is
generated on first start and written, mode 0600 from its creation, into the data directory.
Service tokens, created with the CLI, may register and deregister only the services they
name; only their SHA-256 is stored (a 256-bit random token needs no slow hash), and every
comparison is constant-time (`hmac.compare_digest`). Tokens never reach the logs: install
`RedactTokensFilter` on the handlers that could see them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from meshkit.types import validate_service_name

ADMIN_TOKEN_FILE = "admin.token"
TOKENS_FILE = "tokens.json"
SERVICE_TOKEN_PREFIX = "mks_"  # lets redaction and humans recognise a meshkit token
MIN_ADMIN_TOKEN_CHARS = 16
TOKEN_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")

log = logging.getLogger(__name__)


class Unauthenticated(Exception):
    """No token, or one that matches nothing: answer 401."""


class Forbidden(Exception):
    """A valid token that may not do this: answer 403."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a token belongs to and which services it may manage."""

    name: str
    is_admin: bool
    services: frozenset[str] = frozenset()

    def may_manage(self, service_name: str) -> bool:
        return self.is_admin or service_name in self.services

    def may_replace(self, service_name: str, owner: str | None) -> bool:
        """May this principal overwrite or remove an instance that `owner` registered?"""
        if self.is_admin:
            return True
        return service_name in self.services and (owner is None or owner == self.name)

    def require_manage(self, service_name: str, owner: str | None = None) -> None:
        if not self.may_replace(service_name, owner):
            raise Forbidden(f"token {self.name!r} may not manage this instance of {service_name!r}")


def parse_bearer(authorization: str | None) -> str | None:
    """The token in an `Authorization: Bearer <token>` header, or None when there is none."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token.split()) != 1:  # no whitespace inside
        return None
    return token


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _write_private(path: Path, data: bytes) -> None:
    """Write `data` so that no other user can read it, even for an instant, then swap it in."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


class TokenStore:
    """The admin token and the service tokens, kept in `data_dir` (or in memory when None)."""

    def __init__(self, data_dir: Path | None, *, env_admin_token: str | None = None) -> None:
        if env_admin_token is not None and len(env_admin_token.strip()) < MIN_ADMIN_TOKEN_CHARS:
            raise ValueError(
                f"MESHKIT_ADMIN_TOKEN: must be at least {MIN_ADMIN_TOKEN_CHARS} characters, "
                f"got {len(env_admin_token.strip())}"
            )
        self._data_dir = data_dir
        self._env_admin = env_admin_token.strip() if env_admin_token is not None else None
        self._admin: str | None = self._env_admin
        self._entries: list[dict[str, Any]] = []
        self._loaded_stat: tuple[int, int] | None = None

    @property
    def admin_token_path(self) -> Path | None:
        return None if self._data_dir is None else self._data_dir / ADMIN_TOKEN_FILE

    @property
    def tokens_path(self) -> Path | None:
        return None if self._data_dir is None else self._data_dir / TOKENS_FILE

    def admin_token_source(self) -> str:
        """Where the admin token lives, for `serve` to print (never the token itself)."""
        if self._env_admin is not None:
            return "the MESHKIT_ADMIN_TOKEN environment variable"
        path = self.admin_token_path
        return f"{path} (mode 0600)" if path is not None else "memory only (no data directory)"

    def _ensure_dir(self) -> Path | None:
        if self._data_dir is not None:
            self._data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self._data_dir

    def ensure_admin_token(self) -> str:
        """Return the admin token, generating and storing one on first start."""
        if self._admin is not None:
            return self._admin
        path = self.admin_token_path
        if path is not None and path.exists():
            mode = path.stat().st_mode & 0o777
            if mode & 0o077:
                log.warning("admin token file %s had mode %o; tightening it to 0600", path, mode)
                path.chmod(0o600)
            token = path.read_text(encoding="utf-8").strip()
            if len(token) >= MIN_ADMIN_TOKEN_CHARS:
                self._admin = token
                return token
            log.warning("admin token file %s is too short to trust; generating a new token", path)
        token = secrets.token_urlsafe(32)
        if self._ensure_dir() is not None and path is not None:
            _write_private(path, (token + "\n").encode("utf-8"))
        self._admin = token
        return token

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise read-modify-write of the tokens file between processes (serve and the CLI)."""
        directory = self._ensure_dir()
        if directory is None:
            yield
            return
        fd = os.open(directory / ".tokens.lock", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _reload_if_changed(self) -> None:
        path = self.tokens_path
        if path is None:
            return
        try:
            st = path.stat()
        except FileNotFoundError:
            self._entries, self._loaded_stat = [], None
            return
        key = (st.st_mtime_ns, st.st_size)
        if key != self._loaded_stat:
            self._entries = list(orjson.loads(path.read_bytes()).get("tokens", []))
            self._loaded_stat = key

    def _save(self) -> None:
        path = self.tokens_path
        if path is None:
            return
        _write_private(path, orjson.dumps({"tokens": self._entries}, option=orjson.OPT_INDENT_2))
        st = path.stat()
        self._loaded_stat = (st.st_mtime_ns, st.st_size)

    def create_service_token(self, services: Iterable[str], name: str) -> str:
        """Create a token that may manage `services`; the token is returned once, only its hash kept."""
        if not isinstance(name, str) or not TOKEN_NAME_RE.match(name):
            raise ValueError(f"name: must match {TOKEN_NAME_RE.pattern}, got {name!r}")
        wanted = sorted({validate_service_name(s, "services") for s in services})
        if not wanted:
            raise ValueError("services: must name at least one service")
        token = SERVICE_TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._locked():
            self._reload_if_changed()
            if any(e["name"] == name for e in self._entries):
                raise ValueError(f"name: a token named {name!r} already exists; revoke it first")
            entry = {"name": name, "services": wanted, "created": time.time(), "sha256": _digest(token)}
            self._entries.append(entry)
            self._save()
        return token

    def revoke(self, name: str) -> bool:
        """Forget the token called `name`; False when there was none."""
        with self._locked():
            self._reload_if_changed()
            kept = [e for e in self._entries if e["name"] != name]
            if len(kept) == len(self._entries):
                return False
            self._entries = kept
            self._save()
        return True

    def authenticate(self, token: str | None) -> Principal | None:
        """The principal a token stands for, or None. Comparisons are constant-time."""
        if not token:
            return None
        admin = self.ensure_admin_token()
        if hmac.compare_digest(token.encode("utf-8"), admin.encode("utf-8")):
            return Principal("admin", True, frozenset())
        self._reload_if_changed()
        digest = _digest(token).encode("ascii")
        found: dict[str, Any] | None = None
        for entry in self._entries:  # no early exit: every entry is compared
            if hmac.compare_digest(digest, str(entry["sha256"]).encode("ascii")):
                found = entry
        if found is None:
            return None
        return Principal(str(found["name"]), False, frozenset(found["services"]))

    def require(self, authorization: str | None) -> Principal:
        """Authenticate an `Authorization` header value or raise `Unauthenticated` (401)."""
        principal = self.authenticate(parse_bearer(authorization))
        if principal is None:
            raise Unauthenticated("a valid bearer token is required (Authorization: Bearer <token>)")
        return principal

    def secrets_for_redaction(self) -> list[str]:
        return [self._admin] if self._admin else []

    def list(self) -> list[dict[str, Any]]:
        self._reload_if_changed()
        return [
            {"name": e["name"], "services": list(e["services"]), "created": e["created"]}
            for e in self._entries
        ]


_BEARER_RE = re.compile(r"(?i)\b(bearer)(\s+|%20|\+)[A-Za-z0-9._~+/=-]+")
_SERVICE_TOKEN_RE = re.compile(re.escape(SERVICE_TOKEN_PREFIX) + r"[A-Za-z0-9_-]{8,}")
_TOKEN_ASSIGN_RE = re.compile(
    r"(?i)\b(token|admin_token|authorization)(\"?\s*[=:]\s*\"?)(?!bearer\b)[^\s\"',;&]+"
)
REDACTED = "[REDACTED]"


def redact(text: str, secrets_to_hide: Iterable[str] = ()) -> str:
    """Mask bearer tokens, meshkit service tokens, `token=` values and any of `secrets_to_hide`."""
    for secret in secrets_to_hide:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _BEARER_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _SERVICE_TOKEN_RE.sub(REDACTED, text)
    return _TOKEN_ASSIGN_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


class RedactTokensFilter(logging.Filter):
    """A logging filter that rewrites each record's message (and traceback) with `redact`.

    Attach it to handlers (`handler.addFilter(RedactTokensFilter(store))`), so records from
    every logger (uvicorn's access log included) pass through it.
    """

    def __init__(self, store: TokenStore | None = None) -> None:
        super().__init__()
        self._store = store

    def filter(self, record: logging.LogRecord) -> bool:
        hide = self._store.secrets_for_redaction() if self._store is not None else []
        message = record.getMessage()
        cleaned = redact(message, hide)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, hide)
        return True
