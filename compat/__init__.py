"""Real asyncio libraries' own test suites, run with each mode of the plugin.

``python -m compat`` downloads pinned sdists of pure-Python asyncio libraries
(a rate limiter, caches with TTLs, a job scheduler, a queue bridging threads,
timeouts, sync/async bridges), runs each library's own tests without the
plugin and then in every mode (installed, virtual clock, blocking gate, full
trace, leak warnings, schedule exploration), and compares each test's outcome
with the run without the plugin.  Every difference must be listed, with its
cause, in ``compat/known_differences.py``.  See ``docs/compat.md``.
"""
