"""Failing schedules kept between runs, in the project's pytest cache.

A failing explored test's replay token is saved under the test's id, and the
next run replays it before exploring anything new: a race found once fails
fast until it is fixed.  A saved schedule that passes (the race was fixed)
or that another plugin version made is dropped.  The store lives in
``.pytest_cache`` (``--cache-clear`` empties it; ``-p no:cacheprovider``
turns it off) and holds plain text only.
"""

from __future__ import annotations

import pytest

_PREFIX = "asyncspec/failing-schedules/"


class FailureStore:
    """Replay tokens of failing schedules, per test id."""

    def __init__(self, cache: pytest.Cache | None) -> None:
        self._cache = cache

    @property
    def enabled(self) -> bool:
        """False when pytest's cache is off (``-p no:cacheprovider``)."""
        return self._cache is not None

    @staticmethod
    def _key(nodeid: str) -> str:
        # Test ids hold characters file names may not (':' on Windows).
        import hashlib  # here: hashlib costs milliseconds at pytest start-up

        return _PREFIX + hashlib.sha256(nodeid.encode()).hexdigest()[:20]

    def tokens(self, nodeid: str) -> list[str]:
        if self._cache is None:
            return []
        entry = self._cache.get(self._key(nodeid), None)
        if not isinstance(entry, dict) or entry.get("test") != nodeid:
            return []
        tokens = entry.get("tokens", [])
        return [token for token in tokens if isinstance(token, str)]

    def _write(self, nodeid: str, tokens: list[str]) -> None:
        if self._cache is not None:
            self._cache.set(self._key(nodeid), {"test": nodeid, "tokens": tokens})

    def add(self, nodeid: str, token: str) -> None:
        tokens = self.tokens(nodeid)
        if token not in tokens:
            self._write(nodeid, [*tokens, token])

    def discard(self, nodeid: str, token: str) -> None:
        tokens = self.tokens(nodeid)
        if token in tokens:
            tokens.remove(token)
            self._write(nodeid, tokens)
