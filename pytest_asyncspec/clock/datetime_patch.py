"""Make ``datetime``'s clock readings follow the virtual clock, like ``time.time``.

Which calls read which clock (CPython's C ``_datetime``, 3.10 to 3.13):

* ``date.today()`` and ``datetime.today()`` call ``cls.fromtimestamp(t)`` with
  ``t`` from the Python-level ``time.time``, looked up at every call: they
  follow the patched ``time.time`` with no help from here.
* ``datetime.now(tz=None)`` and ``datetime.utcnow()`` read the system clock in
  C.  While a virtual loop runs, :func:`install` puts Python replacements into
  the C type's own dict (which ``setattr`` refuses for a static type: the dict
  is reached through ``gc.get_referents`` and the type's lookup caches are
  invalidated with ``PyType_Modified``, the technique of forbiddenfruit).
  Every way of reaching the methods then sees them: ``datetime.datetime.now()``,
  ``from datetime import datetime`` bound before the loop ran, subclasses
  (``MyDateTime.now()`` returns a ``MyDateTime``).  :func:`restore` puts the
  very original objects back.

On a thread that follows a virtual loop the replacements compute what the C
methods compute, from the virtual wall clock instead of the system one: ``now``
floors the nanoseconds to microseconds (as C does) and builds the result with
the C ``fromtimestamp`` (same types, same local-time fold, ``tz.fromutc``
called for a ``tz``); ``utcnow`` builds ``cls(...)`` from ``gmtime`` fields, as
C does.  On every other thread ``now`` calls the original C method, and
``utcnow`` computes the same from the real system clock (calling the original
would attribute its 3.12+ DeprecationWarning to this module instead of the
caller).  On 3.12+ ``utcnow`` warns with stock's message and category, at the
caller's line.

With the pure-Python ``datetime`` (no ``_datetime``), ``now`` and ``utcnow``
already call ``time.time`` and nothing is patched.
"""

from __future__ import annotations

import datetime as _datetime_module
import gc
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

_datetime = _datetime_module.datetime
_real_time_ns = time.time_ns
_gmtime = time.gmtime

#: The original dict entries, captured at import.
_original_now: Any = _datetime.__dict__.get("now")
_original_utcnow: Any = _datetime.__dict__.get("utcnow")
_c_fromtimestamp: Any = _datetime.__dict__.get("fromtimestamp")

#: Only the C type needs (and allows only this way) the replacement.
SUPPORTED = (
    sys.implementation.name == "cpython"
    and type(_original_now).__name__ == "classmethod_descriptor"
    and type(_original_utcnow).__name__ == "classmethod_descriptor"
)

_UTCNOW_WARNS = sys.version_info >= (3, 12)
_UTCNOW_DEPRECATION = (
    "datetime.datetime.utcnow() is deprecated and scheduled for removal in a "
    "future version. Use timezone-aware objects to represent datetimes in UTC: "
    "datetime.datetime.now(datetime.UTC)."
)


def _no_virtual_clock() -> int | None:
    return None


#: Returns the virtual wall-clock ns (since the Unix epoch) of the calling
#: thread's virtual loop, or None on a thread that follows none.  Set by
#: :func:`bind` (time_patch binds its registry at import).
_virtual_wall_ns: Callable[[], int | None] = _no_virtual_clock


def bind(reader: Callable[[], int | None]) -> None:
    """Tell the replacements how to read the calling thread's virtual clock."""
    global _virtual_wall_ns
    _virtual_wall_ns = reader


def _now(cls: type[_datetime_module.datetime], tz: Any = None) -> Any:
    ns = _virtual_wall_ns()
    if ns is None:
        return _original_now(cls, tz)
    seconds, micros = divmod(ns // 1000, 1_000_000)
    # A float of seconds + micros rounds back to exactly ``micros`` in
    # fromtimestamp (half-even) while the float's spacing stays under a
    # microsecond: for every date before the year 2242.
    return _c_fromtimestamp(cls, seconds + micros / 1_000_000, tz)


def _utcnow(cls: type[_datetime_module.datetime]) -> Any:
    if _UTCNOW_WARNS:
        # stacklevel 2 names our caller's line, as C's warning (level 1 from C)
        # names the line that called it.
        warnings.warn(_UTCNOW_DEPRECATION, DeprecationWarning, stacklevel=2)
    ns = _virtual_wall_ns()
    if ns is None:
        ns = _real_time_ns()
    seconds, micros = divmod(ns // 1000, 1_000_000)
    fields = _gmtime(seconds)
    # C clamps a leap second to 59 and calls a subclass with a None tzinfo.
    return cls(
        fields.tm_year,
        fields.tm_mon,
        fields.tm_mday,
        fields.tm_hour,
        fields.tm_min,
        min(fields.tm_sec, 59),
        micros,
        None,
    )


def _dressed(function: Callable[..., Any], original: Any) -> classmethod[Any, Any, Any]:
    function.__name__ = original.__name__
    function.__qualname__ = original.__qualname__
    function.__doc__ = original.__doc__
    function.__module__ = _datetime.__module__
    return classmethod(function)


_REPLACEMENTS: dict[str, Any] = {}
_ORIGINALS: dict[str, Any] = {}
if SUPPORTED:
    _REPLACEMENTS = {
        "now": _dressed(_now, _original_now),
        "utcnow": _dressed(_utcnow, _original_utcnow),
    }
    _ORIGINALS = {"now": _original_now, "utcnow": _original_utcnow}

# Found on the first install: the type's real dict, and a caller of the C
# function that drops the type's (and its subclasses') attribute caches.
_type_dict: dict[str, Any] | None = None
_drop_caches: Callable[[], None] | None = None


def _prepare() -> tuple[dict[str, Any], Callable[[], None]]:
    global _type_dict, _drop_caches
    if _type_dict is None or _drop_caches is None:
        import ctypes
        import functools

        (type_dict,) = gc.get_referents(_datetime.__dict__)
        assert isinstance(type_dict, dict)
        assert "now" in type_dict
        modified = ctypes.pythonapi.PyType_Modified
        modified.restype = None
        # The argument is wrapped once: converting it at every call costs
        # more than the call itself, and install/restore run at every
        # first start and last stop of a virtual loop.
        _type_dict = type_dict
        _drop_caches = functools.partial(modified, ctypes.py_object(_datetime))
    return _type_dict, _drop_caches


def install() -> None:
    """Put the replacements in place (the caller serialises the calls)."""
    if not SUPPORTED:
        return
    type_dict, drop_caches = _prepare()
    type_dict.update(_REPLACEMENTS)
    drop_caches()


def restore() -> None:
    """Put the original methods back where ours are (safe to call any time).

    Decided by what the dict holds, not by a flag: in a forked child the
    parent may have been half-way through :func:`install` on another thread.
    """
    if _type_dict is None:
        return  # never installed in this process (nor in a parent before a fork)
    type_dict, drop_caches = _prepare()
    changed = False
    for name, original in _ORIGINALS.items():
        if type_dict.get(name) is _REPLACEMENTS[name]:
            type_dict[name] = original
            changed = True
    if changed:
        drop_caches()
