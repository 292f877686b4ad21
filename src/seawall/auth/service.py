"""Accounts, console sessions and API keys. Plain functions that take a session; every change is audited."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import event, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from seawall.auth import audit
from seawall.auth.models import ApiKey, ConsoleSession, User
from seawall.auth.names import check_name
from seawall.auth.permissions import ROLE_SCOPES, Principal, Role, validate_scopes
from seawall.config import Settings
from seawall.db import utcnow

log = logging.getLogger(__name__)
_hasher = PasswordHasher()
# Verified against when the username is unknown, so a miss costs the same time as a wrong password.
_DUMMY_HASH = _hasher.hash("not-a-password")

API_KEY_PREFIX = "swk_"
# Who a refused login is recorded as when the name given is nobody's.
ANONYMOUS = Principal(kind="anonymous", name="", scopes=frozenset())
# Recording a key's last use on every request would turn every lookup into a write.
_LAST_USED_GRANULARITY = timedelta(minutes=5)


class AuthError(Exception):
    """A refused credential; ``reason`` is safe to show to the person."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    pass


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def generate_password() -> str:
    return secrets.token_urlsafe(15)


def user_principal(user: User) -> Principal:
    return Principal(kind="user", name=user.username, id=user.id, role=user.role, scopes=ROLE_SCOPES[Role(user.role)])


def key_principal(key: ApiKey) -> Principal:
    return Principal(
        kind="key",
        name=key.name,
        id=key.id,
        scopes=frozenset(key.scopes),
        lists=frozenset(key.lists) if key.lists is not None else None,
    )


# ---- users ---------------------------------------------------------------------------------


def get_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"no user named {username!r}")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def create_user(
    session: Session,
    actor: Principal,
    *,
    username: str,
    role: str,
    password: str | None = None,
    display_name: str = "",
) -> tuple[User, str]:
    """Create a user; returns it and its password (generated when not given), shown once."""
    try:
        role = Role(role).value
    except ValueError:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(r.value for r in Role)}") from None
    username = username.strip()
    if not username or len(username) > 80:
        raise ValueError("a username is 1 to 80 characters")
    check_name(username, "username")
    check_name(display_name, "display name")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"a user named {username!r} exists already")
    password = password or generate_password()
    if len(password) < 10:
        raise ValueError("a password is at least 10 characters")
    user = User(username=username, role=role, password_hash=_hasher.hash(password), display_name=display_name)
    session.add(user)
    session.flush()
    audit.record(session, actor, "user.create", "user", user.id, {"username": username, "role": role})
    return user, password


def set_user_disabled(session: Session, actor: Principal, username: str, disabled: bool) -> User:
    user = get_user(session, username)
    user.disabled = disabled
    if disabled:
        end_console_sessions(session, user.id)  # a disabled account loses its open sessions at once
    else:
        user.failed_logins = 0
        user.locked_until = None
    audit.record(session, actor, "user.disable" if disabled else "user.enable", "user", user.id, {"username": username})
    return user


def set_role(session: Session, actor: Principal, username: str, role: str) -> User:
    """Change a user's role; their open sessions end, so the new powers apply from the next login."""
    try:
        role = Role(role).value
    except ValueError:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(r.value for r in Role)}") from None
    user = get_user(session, username)
    if user.role != role:
        before, user.role = user.role, role
        end_console_sessions(session, user.id)
        audit.record(session, actor, "user.role", "user", user.id, {"username": username, "from": before, "to": role})
    return user


def set_password(session: Session, actor: Principal, username: str, password: str) -> User:
    if len(password) < 10:
        raise ValueError("a password is at least 10 characters")
    user = get_user(session, username)
    user.password_hash = _hasher.hash(password)
    # Whoever had the old password may be logged in with it: every open session ends.
    end_console_sessions(session, user.id)
    # A new password ends a lock-out; a disabled account stays disabled.
    user.failed_logins = 0
    user.locked_until = None
    audit.record(session, actor, "user.password", "user", user.id, {"username": username})
    return user


def authenticate(session: Session, settings: Settings, username: str, password: str) -> User:
    """Check a console login; counts failures and locks the account after too many."""
    now = utcnow()
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        with contextlib.suppress(VerificationError):
            _hasher.verify(_DUMMY_HASH, password)
        # What was typed is not kept: it is no user's name, and may be someone's password typed in
        # the wrong field; the permanent chain would keep it for ever.
        audit.record(session, ANONYMOUS, "auth.login_failed", "user", "", {"reason": "unknown user"})
        raise AuthError("Wrong username or password.")
    # The account's own name, as stored, with no powers: the attempt is not the user acting.
    anonymous = Principal(kind="user", name=user.username, id=user.id, scopes=frozenset())
    if user.disabled:
        audit.record(session, anonymous, "auth.login_failed", "user", user.id, {"reason": "disabled"})
        raise AuthError("This account is disabled.")
    if user.locked_until is not None and user.locked_until > now:
        audit.record(session, anonymous, "auth.login_failed", "user", user.id, {"reason": "locked"})
        raise AuthError("This account is locked after repeated failed logins. Try again later.")
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        user.failed_logins += 1
        details: dict[str, object] = {"reason": "wrong password", "failures": user.failed_logins}
        if user.failed_logins >= settings.login_max_failures:
            user.locked_until = now + timedelta(minutes=settings.login_lockout_minutes)
            user.failed_logins = 0
            details["locked_until"] = user.locked_until.isoformat()
            audit.record(session, anonymous, "auth.login_failed", "user", user.id, details)
            raise AuthError("This account is locked after repeated failed logins. Try again later.") from None
        audit.record(session, anonymous, "auth.login_failed", "user", user.id, details)
        raise AuthError("Wrong username or password.") from None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    audit.record(session, user_principal(user), "auth.login", "user", user.id)
    return user


# ---- console sessions ----------------------------------------------------------------------


def start_console_session(session: Session, settings: Settings, user: User) -> str:
    """Open a console session; returns the token for the cookie (only its hash is kept)."""
    token = secrets.token_urlsafe(32)
    session.add(
        ConsoleSession(
            token_hash=_sha256(token),
            user_id=user.id,
            expires_at=utcnow() + timedelta(hours=settings.session_hours),
        )
    )
    session.flush()
    return token


def console_session_user(session: Session, token: str) -> User | None:
    """The user behind a session cookie, or None if it is unknown, expired, revoked or disabled."""
    row = session.scalar(select(ConsoleSession).where(ConsoleSession.token_hash == _sha256(token)))
    if row is None or row.revoked or row.expires_at <= utcnow() or row.user.disabled:
        return None
    return row.user


def end_console_sessions(session: Session, user_id: int) -> None:
    """End every open console session of a user (password reset, disable)."""
    session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.user_id == user_id, ConsoleSession.revoked.is_(False))
        .values(revoked=True)
    )


def end_console_session(session: Session, token: str) -> None:
    row = session.scalar(select(ConsoleSession).where(ConsoleSession.token_hash == _sha256(token)))
    if row is not None and not row.revoked:
        row.revoked = True
        audit.record(session, user_principal(row.user), "auth.logout", "user", row.user_id)


# ---- API keys ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewApiKey:
    key: ApiKey
    secret: str  # shown once


def create_api_key(
    session: Session, actor: Principal, *, name: str, scopes: list[str], lists: list[str] | None = None
) -> NewApiKey:
    name = name.strip()
    if not name or len(name) > 120:
        raise ValueError("a key name is 1 to 120 characters")
    check_name(name, "key name")
    if not scopes:
        raise ValueError("a key needs at least one scope")
    scopes = validate_scopes(scopes)
    if session.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
        raise Conflict(f"an API key named {name!r} exists already")
    secret = API_KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        name=name,
        prefix=secret[: len(API_KEY_PREFIX) + 6],
        key_hash=_sha256(secret),
        scopes=scopes,
        lists=sorted(set(lists)) if lists else None,
        created_by=actor.name,
    )
    session.add(key)
    session.flush()
    audit.record(session, actor, "key.create", "api_key", key.id, {"name": name, "scopes": scopes, "lists": key.lists})
    return NewApiKey(key, secret)


def list_api_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.name)))


def revoke_api_key(session: Session, actor: Principal, name: str) -> ApiKey:
    key = session.scalar(select(ApiKey).where(ApiKey.name == name))
    if key is None:
        raise NotFound(f"no API key named {name!r}")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        audit.record(session, actor, "key.revoke", "api_key", key.id, {"name": name})
    # Only once the revocation is committed: cleared before, a request reading the old row in the
    # meantime would cache the key again.
    event.listen(session, "after_commit", lambda _session: clear_key_cache(), once=True)
    return key


# Checked keys, by the SHA-256 of their secret: (valid until, principal). A revocation clears the
# cache of its own process when it commits; in other processes an entry lives at most
# KEY_CACHE_SECONDS from a database read made before that commit, so a revoked key is refused
# everywhere within KEY_CACHE_SECONDS of the commit.
KEY_CACHE_SECONDS = 5.0
_key_cache: dict[str, tuple[float, Principal]] = {}
# Bumped by every clear, under the lock: a check whose database read began before a clear does not cache.
_key_generation = 0
_key_lock = threading.Lock()


def clear_key_cache() -> None:
    global _key_generation
    with _key_lock:
        _key_generation += 1
        _key_cache.clear()


def cached_api_key_principal(secret: str) -> Principal | None:
    """The principal of a bearer secret checked in the last few seconds, else None (no I/O)."""
    cached = _key_cache.get(_sha256(secret))
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    return None


def api_key_principal(factory: Callable[[], Session], secret: str) -> Principal:
    """The principal of a bearer secret, from a short-lived in-process cache or the database.

    The hot path of every partner request: a cached key costs no database round trip. Its last
    use is recorded at most every few minutes, in a write of its own.
    """
    cached = cached_api_key_principal(secret)
    if cached is not None:
        return cached
    digest, now, generation = _sha256(secret), time.monotonic(), _key_generation
    with factory() as session:
        key = authenticate_api_key(session, secret)
        principal = key_principal(key)
        stale = key.last_used_at is None or utcnow() - key.last_used_at > _LAST_USED_GRANULARITY
    if stale:
        _touch_api_key(factory, key.id)
    with _key_lock:
        if generation == _key_generation:
            if len(_key_cache) > 10_000:
                _key_cache.clear()
            _key_cache[digest] = (now + KEY_CACHE_SECONDS, principal)
    return principal


def _touch_api_key(factory: Callable[[], Session], key_id: int) -> None:
    """Record a key's last use: best effort, and never at the cost of the request. It runs inside
    authentication, so it does not wait for a lock: when another writer holds SQLite's write lock
    (or PostgreSQL's lock on the key's row) it is skipped, and the next check of the key, a few
    seconds on, tries again."""
    with factory() as session:
        bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    try:
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            waited = 0
            if sqlite:
                # Per connection, not per transaction: set back before the connection returns to the pool.
                waited = int(connection.exec_driver_sql("PRAGMA busy_timeout").scalar() or 0)
                connection.exec_driver_sql("PRAGMA busy_timeout = 0")
            else:
                connection.exec_driver_sql("SET LOCAL lock_timeout = '100ms'")
            try:
                connection.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=utcnow()))
                connection.commit()
            finally:
                if sqlite:
                    connection.rollback()
                    connection.exec_driver_sql(f"PRAGMA busy_timeout = {waited}")
                    connection.commit()
    except OperationalError as exc:
        log.info("last use of API key %s not recorded now (the database is busy): %s", key_id, exc)


def authenticate_api_key(session: Session, secret: str) -> ApiKey:
    """The key a bearer secret belongs to; AuthError when unknown or revoked."""
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == _sha256(secret)))
    if key is None or not hmac.compare_digest(key.key_hash, _sha256(secret)):
        raise AuthError("invalid API key")
    if key.revoked_at is not None:
        raise AuthError("this API key has been revoked")
    return key
