"""Checks built on the clock and the trace: timing, ordering, output, leaks,
hangs, and blocking calls with their allow rules.  Their public names are at
the top level and in :mod:`pytest_asyncspec.tracing`."""
