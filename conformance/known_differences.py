"""Tests of CPython's test_asyncio that may fail on our loops, each with why.

Keys are a test's method name or its full id.  Only two kinds of reason are
accepted: an outside event the virtual clock cannot see, or a test of the
stock loop's private internals that our loop replaces by design.  The list
must stay short; a new entry needs its reason in ``docs/conformance.md``.
"""

from __future__ import annotations

KNOWN_DIFFERENCES: dict[str, str] = {}
