"""watch caps glibc's malloc arenas, unless the operator chose a number, and only where glibc is the C library."""

from __future__ import annotations

import ctypes
import sys

import pytest

from reconciler.watch import allocator as memory


def glibc() -> bool:
    try:
        ctypes.CDLL(None).gnu_get_libc_version  # noqa: B018
    except (OSError, AttributeError):
        return False
    return sys.platform.startswith("linux")


@pytest.mark.parametrize(
    ("name", "value"),
    [("MALLOC_ARENA_MAX", "4"), ("GLIBC_TUNABLES", "glibc.malloc.arena_max=4")],
)
def test_an_operators_choice_is_left_alone(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    """MALLOC_ARENA_MAX or the glibc tunable in the environment: no mallopt call, the operator's number stands."""
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.setenv(name, value)
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda *_: pytest.fail("mallopt called"))
    assert memory.limit_malloc_arenas() is False


def test_other_tunables_do_not_count_as_a_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """GLIBC_TUNABLES that says nothing of arenas does not stop the cap."""
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0")
    calls: list[tuple[int, int]] = []

    class Libc:
        gnu_get_libc_version = object()

        @staticmethod
        def mallopt(param: int, value: int) -> int:
            calls.append((param, value))
            return 1

    monkeypatch.setattr(memory.ctypes, "CDLL", lambda *_: Libc())
    monkeypatch.setattr(memory.sys, "platform", "linux")
    assert memory.limit_malloc_arenas() is True and calls == [(memory.M_ARENA_MAX, memory.WATCH_ARENAS)]


def test_without_glibc_nothing_is_done(monkeypatch: pytest.MonkeyPatch) -> None:
    """A C library without gnu_get_libc_version (musl) is not asked: its mallopt has no such parameter."""
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)

    class Musl:
        @staticmethod
        def mallopt(param: int, value: int) -> int:
            pytest.fail("mallopt called")

    monkeypatch.setattr(memory.ctypes, "CDLL", lambda *_: Musl())
    monkeypatch.setattr(memory.sys, "platform", "linux")
    assert memory.limit_malloc_arenas() is False


@pytest.mark.skipif(not glibc(), reason="needs glibc")
def test_glibc_accepts_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """On glibc the real mallopt takes the parameter (it returns 1 on success)."""
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    assert memory.limit_malloc_arenas() is True
