"""``datetime`` follows the virtual clock on the loop thread, as ``time.time`` does.

On the thread running a virtual loop, ``datetime.now()`` (with or without a
time zone), ``datetime.utcnow()``, ``date.today()`` and ``datetime.today()``
read the virtual wall clock; every other thread reads the real one; and once no
virtual loop runs the classes are exactly as Python made them.  The module
binds ``datetime`` by name at import, before any loop runs, as most code does.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import warnings
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING, Any

import pytest

from pytest_asyncspec import VirtualClockLoop
from pytest_asyncspec.clock import time_patch

if TYPE_CHECKING:
    from conftest import RunVirtual

_ORIGINAL_DICT_ENTRIES = {
    (cls, name): cls.__dict__[name]
    for cls, name in [(datetime, "now"), (datetime, "utcnow"), (date, "today")]
    if name in cls.__dict__
}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_PLUS_0530 = timezone(timedelta(hours=5, minutes=30), "IST")
_UTCNOW_WARNS = sys.version_info >= (3, 12)


class MyDateTime(datetime):
    """A user's subclass, as pendulum-like libraries and tests define them."""


class MyDate(date):
    pass


def _untouched() -> bool:
    return all(cls.__dict__[name] is entry for (cls, name), entry in _ORIGINAL_DICT_ENTRIES.items())


def _utcnow(cls: type[datetime] = datetime) -> datetime:
    """``cls.utcnow()`` without its 3.12+ DeprecationWarning failing the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return cls.utcnow()


def _utc_from_ns(ns: int) -> datetime:
    """The aware UTC datetime of ``ns`` since the epoch, floored to microseconds,
    by integer arithmetic alone (what stock ``now()`` does with the system clock)."""
    return _EPOCH + timedelta(microseconds=ns // 1000)


def _readings() -> dict[str, Any]:
    """Every datetime reading at one instant, with the ``time.time_ns()`` it
    should follow (nothing moves between them on the virtual clock)."""
    return {
        "ns": time.time_ns(),
        "time": time.time(),
        "now": datetime.now(),
        "now utc": datetime.now(timezone.utc),
        "now tz=+05:30": datetime.now(tz=_PLUS_0530),
        "utcnow": _utcnow(),
        "date today": date.today(),
        "datetime today": datetime.today(),
        "MyDateTime now": MyDateTime.now(timezone.utc),
        "MyDateTime utcnow": _utcnow(MyDateTime),
        "MyDateTime today": MyDateTime.today(),
        "MyDate today": MyDate.today(),
    }


def _check_follow(seen: dict[str, Any]) -> None:
    """Each reading is exactly what the wall clock ``time`` shows says it is."""
    utc = _utc_from_ns(seen["ns"])
    assert seen["now utc"] == utc
    assert seen["now utc"].tzinfo is timezone.utc
    assert seen["now tz=+05:30"] == utc
    assert seen["now tz=+05:30"].tzinfo is _PLUS_0530
    assert seen["now tz=+05:30"].utcoffset() == timedelta(hours=5, minutes=30)
    assert seen["now"] == utc.astimezone().replace(tzinfo=None)
    assert seen["utcnow"] == utc.replace(tzinfo=None)
    # today() is fromtimestamp(time.time()), in C as in the pure-Python module.
    assert seen["datetime today"] == datetime.fromtimestamp(seen["time"])
    assert seen["date today"] == datetime.fromtimestamp(seen["time"]).date()
    assert seen["MyDateTime now"] == utc
    assert seen["MyDateTime utcnow"] == utc.replace(tzinfo=None)
    assert seen["MyDateTime today"] == datetime.fromtimestamp(seen["time"])
    assert seen["MyDate today"] == seen["date today"]
    assert {key: type(value).__name__ for key, value in seen.items()} == {
        "ns": "int",
        "time": "float",
        "now": "datetime",
        "now utc": "datetime",
        "now tz=+05:30": "datetime",
        "utcnow": "datetime",
        "date today": "date",
        "datetime today": "datetime",
        "MyDateTime now": "MyDateTime",
        "MyDateTime utcnow": "MyDateTime",
        "MyDateTime today": "MyDateTime",
        "MyDate today": "MyDate",
    }
    assert type(seen["now"]) is datetime
    assert type(seen["date today"]) is date


def test_datetime_reads_the_virtual_clock_on_the_loop_thread(run_virtual: RunVirtual) -> None:
    """On the loop thread every reading equals the virtual ``time.time_ns()``
    (floored to microseconds, as stock ``now()`` floors the system clock), and
    after ``await asyncio.sleep(3600)`` each has moved by exactly an hour."""

    async def main() -> tuple[int, dict[str, Any], dict[str, Any]]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        before = _readings()
        await asyncio.sleep(3600)
        return loop.epoch_ns(), before, _readings()

    epoch_ns, before, after = run_virtual(main)

    assert before["ns"] == epoch_ns
    assert after["ns"] == epoch_ns + 3600 * 10**9
    _check_follow(before)
    _check_follow(after)
    hour = timedelta(hours=1)
    for key in ["now utc", "now tz=+05:30", "utcnow", "MyDateTime now", "MyDateTime utcnow"]:
        assert after[key] - before[key] == hour, key
    assert _untouched()


def test_a_blocking_sleep_moves_datetime_too(run_virtual: RunVirtual) -> None:
    """``time.sleep(90)`` on the loop thread moves ``datetime.now`` by 90 s."""

    async def main() -> timedelta:
        before = datetime.now(timezone.utc)
        time.sleep(90)
        return datetime.now(timezone.utc) - before

    assert run_virtual(main) == timedelta(seconds=90)


def _real_readings_around() -> dict[str, Any]:
    """Readings on a thread without a virtual loop, between real clock readings."""
    real_before = time_patch.real_time_ns()
    seen = {
        "now utc": datetime.now(timezone.utc),
        "now": datetime.now(),
        "utcnow": _utcnow(),
        "MyDateTime now": MyDateTime.now(timezone.utc),
        "datetime today": datetime.today(),
        "date today": date.today(),
    }
    real_after = time_patch.real_time_ns()
    low, high = _utc_from_ns(real_before), _utc_from_ns(real_after)
    # fromtimestamp rounds a float to the nearest microsecond: one of slack.
    slack = timedelta(microseconds=1)
    return {
        "now utc": low <= seen["now utc"] <= high,
        "now": low <= seen["now"].astimezone(timezone.utc) <= high,
        "utcnow": low <= seen["utcnow"].replace(tzinfo=timezone.utc) <= high,
        "MyDateTime now": low <= seen["MyDateTime now"] <= high,
        "datetime today": low - slack
        <= seen["datetime today"].astimezone(timezone.utc)
        <= high + slack,
        "date today": seen["date today"] in {low.astimezone().date(), high.astimezone().date()},
        "types": [type(value).__name__ for value in seen.values()],
    }


_REAL = {
    "now utc": True,
    "now": True,
    "utcnow": True,
    "MyDateTime now": True,
    "datetime today": True,
    "date today": True,
    "types": ["datetime", "datetime", "datetime", "MyDateTime", "datetime", "date"],
}


def test_other_threads_read_the_real_clock_meanwhile(run_virtual: RunVirtual) -> None:
    """A thread started while the loop runs (after an hour of virtual time)
    reads the real wall clock through every datetime call."""
    seen: list[dict[str, Any]] = []

    async def main() -> dict[str, Any]:
        await asyncio.sleep(3600)
        thread = threading.Thread(target=lambda: seen.append(_real_readings_around()))
        thread.start()
        thread.join(timeout=10)
        assert not thread.is_alive()
        return _readings()

    on_loop = run_virtual(main)

    _check_follow(on_loop)
    assert seen == [_REAL]


def test_everything_is_real_and_untouched_once_the_loop_stops(run_virtual: RunVirtual) -> None:
    """While the loop runs the classes are patched; once it stops, the entries of
    their type dicts are the very objects Python put there, and the readings on
    this same thread are real."""

    async def main() -> bool:
        return _untouched()

    assert _untouched()
    assert run_virtual(main) is False
    assert _untouched()
    assert _real_readings_around() == _REAL


def _utcnow_warning_line() -> tuple[str, type[Warning], str, int]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        datetime.utcnow()  # the line the warning must name
        line = sys._getframe().f_lineno - 1
    assert len(caught) == 1, caught
    warning = caught[0]
    assert warning.lineno == line
    return str(warning.message), warning.category, warning.filename, warning.lineno


@pytest.mark.skipif(not _UTCNOW_WARNS, reason="utcnow() warns from Python 3.12")
def test_utcnow_warns_as_stock_does(run_virtual: RunVirtual) -> None:
    """Python 3.12+ deprecates ``utcnow()``: on the loop thread and on other
    threads while the loop runs it warns exactly as the stock method does, the
    caller's file and line included."""
    stock = _utcnow_warning_line()
    assert stock[1] is DeprecationWarning
    assert stock[2] == __file__
    seen: list[tuple[str, type[Warning], str, int]] = []

    async def main() -> tuple[str, type[Warning], str, int]:
        thread = threading.Thread(target=lambda: seen.append(_utcnow_warning_line()))
        thread.start()
        thread.join(timeout=10)
        return _utcnow_warning_line()

    assert run_virtual(main) == stock
    assert seen == [stock]


@pytest.mark.skipif(_UTCNOW_WARNS, reason="utcnow() warns from Python 3.12")
def test_utcnow_does_not_warn_before_3_12(run_virtual: RunVirtual) -> None:
    async def main() -> datetime:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return datetime.utcnow()

    assert type(run_virtual(main)) is datetime


class _Sixty(tzinfo):
    """A zone one hour east of UTC that counts its own ``fromutc`` calls."""

    calls = 0

    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(hours=1)

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)

    def fromutc(self, dt: datetime) -> datetime:
        type(self).calls += 1
        return dt + timedelta(hours=1)


def test_now_keeps_the_tz_semantics(run_virtual: RunVirtual) -> None:
    """``now(tz)`` converts through ``tz.fromutc`` (a user's tzinfo is asked),
    ``tz`` may be passed by keyword, and a tz that is not a tzinfo is refused with
    stock's own TypeError."""
    with pytest.raises(TypeError) as stock_error:
        datetime.now(5)  # type: ignore[arg-type]

    async def main() -> tuple[datetime, datetime, int, str]:
        zone = _Sixty()
        utc = datetime.now(timezone.utc)
        local = datetime.now(tz=zone)
        with pytest.raises(TypeError) as error:
            datetime.now(5)  # type: ignore[arg-type]
        return utc, local, _Sixty.calls, str(error.value)

    utc, local, calls, message = run_virtual(main)

    assert calls == 1
    assert local.utcoffset() == timedelta(hours=1)
    assert local == utc
    assert local.replace(tzinfo=None) == utc.replace(tzinfo=None) + timedelta(hours=1)
    assert message == str(stock_error.value)


def test_each_thread_reads_its_own_virtual_loop() -> None:
    """Two virtual loops on two threads: each thread's datetime follows its own
    loop (both started near the same real instant, one 100 s on, one 7 s on)."""
    other_at: list[timedelta] = []
    other_ready = threading.Event()
    release = threading.Event()

    async def other_main() -> None:
        start = datetime.now(timezone.utc)
        await asyncio.sleep(100)
        other_ready.set()
        release.wait(timeout=10)
        other_at.append(datetime.now(timezone.utc) - start)

    def run_other() -> None:
        loop = VirtualClockLoop()
        try:
            loop.run_until_complete(other_main())
        finally:
            loop.close()

    async def this_main() -> timedelta:
        start = datetime.now(timezone.utc)
        await asyncio.sleep(7)
        return datetime.now(timezone.utc) - start

    other = threading.Thread(target=run_other)
    other.start()
    try:
        assert other_ready.wait(timeout=10)
        loop = VirtualClockLoop()
        try:
            assert loop.run_until_complete(this_main()) == timedelta(seconds=7)
        finally:
            loop.close()
        assert not _untouched()  # the other loop still runs
    finally:
        release.set()
        other.join(timeout=10)
    assert other_at == [timedelta(seconds=100)]
    assert _untouched()


def test_the_replacements_look_like_the_originals(run_virtual: RunVirtual) -> None:
    """While patched, ``datetime.now`` and ``utcnow`` keep their names and
    documentation (help(), IDEs and docs generators read them)."""
    stock = {
        name: (getattr(datetime, name).__name__, getattr(datetime, name).__doc__)
        for name in ("now", "utcnow")
    }

    async def main() -> dict[str, tuple[str, str | None]]:
        return {
            name: (getattr(datetime, name).__name__, getattr(datetime, name).__doc__)
            for name in ("now", "utcnow")
        }

    assert run_virtual(main) == stock


def _utc_now_here() -> datetime:
    return datetime.now(timezone.utc)


def test_call_sites_warmed_up_before_the_loop_follow_it(run_virtual: RunVirtual) -> None:
    """A call site run thousands of times before the loop (so the interpreter
    has specialised and cached its lookup of ``datetime.now``) reads the virtual
    clock while the loop runs, and the real one again after."""
    for _ in range(5_000):
        _utc_now_here()

    async def main() -> tuple[datetime, int]:
        for _ in range(5_000):
            _utc_now_here()
        return _utc_now_here(), time.time_ns()

    on_loop, ns = run_virtual(main)
    assert on_loop == _utc_from_ns(ns)
    for _ in range(5_000):
        _utc_now_here()
    real_before = time_patch.real_time_ns()
    after = _utc_now_here()
    assert _utc_from_ns(real_before) <= after <= _utc_from_ns(time_patch.real_time_ns())
