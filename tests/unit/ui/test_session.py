"""Dashboard session, login and CSRF tokens (server/ui/session.py)."""

from __future__ import annotations

from server.ui.session import Sessions

MASTER = "sb-master-0123456789abcdefghijklmnopqrstuvwxyz"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_token_verifies_and_never_contains_the_master_key() -> None:
    sessions = Sessions(MASTER)
    token = sessions.issue()
    assert sessions.verify(token) is not None
    assert MASTER not in token
    assert Sessions("sb-another-master-key").verify(token) is None


def test_a_tampered_or_malformed_token_is_refused() -> None:
    sessions = Sessions(MASTER)
    expiry, nonce, mac = sessions.issue().split(".")
    assert sessions.verify(f"{int(expiry) + 3600}.{nonce}.{mac}") is None
    assert sessions.verify(f"{expiry}.{nonce}x.{mac}") is None
    assert sessions.verify(f"{expiry}.{nonce}.{'0' * len(mac)}") is None
    for bad in (None, "", "a.b", "a.b.c.d", MASTER):
        assert sessions.verify(bad) is None


def test_a_session_expires() -> None:
    clock = Clock()
    sessions = Sessions(MASTER, clock=clock)
    token = sessions.issue(seconds=60)
    clock.now += 59
    assert sessions.verify(token) is not None
    clock.now += 1
    assert sessions.verify(token) is None


def test_login_and_session_tokens_are_not_interchangeable() -> None:
    sessions = Sessions(MASTER)
    assert sessions.verify(sessions.issue_login()) is None
    assert sessions.verify_login(sessions.issue()) is None


def test_logout_ends_that_session_only() -> None:
    sessions = Sessions(MASTER)
    mine, other = sessions.issue(), sessions.issue()
    sessions.revoke(mine)
    assert sessions.verify(mine) is None
    assert sessions.verify(other) is not None


def test_csrf_tokens_belong_to_one_session() -> None:
    sessions = Sessions(MASTER)
    a = sessions.verify(sessions.issue())
    b = sessions.verify(sessions.issue())
    assert a is not None and b is not None
    assert sessions.csrf_ok(a, sessions.csrf(a))
    assert not sessions.csrf_ok(a, sessions.csrf(b))
    assert not sessions.csrf_ok(a, None)
    assert not sessions.csrf_ok(a, "")


def test_only_the_master_key_logs_in() -> None:
    sessions = Sessions(MASTER)
    assert sessions.is_master_key(MASTER)
    assert not sessions.is_master_key(MASTER[:-1])
    assert not sessions.is_master_key("")
