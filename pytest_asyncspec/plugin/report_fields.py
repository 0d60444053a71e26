"""The attributes that carry a test's asyncspec data on its pytest reports.

pytest serialises a report's extra attributes, so whatever is stored under
these names travels unchanged from the process that ran the test to the one
that reports: under pytest-xdist, from a worker to the controller.  Every
value is plain JSON-able data.
"""

from __future__ import annotations

#: The test's claim: its tag, settings and figures (see :mod:`.claims`).
CLAIM = "asyncspec_claim"
#: An explored test's summary: schedules, distinct orders, seed, PCT bounds.
EXPLORATION_SUMMARY = "asyncspec_exploration"
#: The blocking steps of the report's phase that no allow rule allowed, one
#: entry per place (:meth:`~pytest_asyncspec.checks.blocking_groups.BlockingGroup.payload` and its
#: ``phase``: each of setup, call and teardown carries its own).
BLOCKING = "asyncspec_blocking"
#: The test's blocking steps that an allow rule allowed, one entry per rule
#: and place (the entry's ``rule``).
ALLOWED_BLOCKING = "asyncspec_allowed_blocking"
#: A traced test's timeline, for the HTML page, packed as text
#: (:func:`.html_report.pack_timeline`).
TIMELINE = "asyncspec_timeline"
#: A test's position in the collection order, on each of its reports when
#: the HTML page is asked for: the page's order, the same under pytest-xdist.
POSITION = "asyncspec_position"
#: The user property (``report.user_properties``) naming a traced test's
#: trace file, written with ``--asyncspec-trace-dir``.
TRACE_FILE = "asyncspec_trace_file"
#: The user property naming a trace file that left steps out (the test ran
#: more than ``--asyncspec-trace-max-steps``): ``[path, steps kept, steps run]``.
TRACE_CLIPPED = "asyncspec_trace_clipped"
#: The leak allow rules of a test's leak check: ``{"used": [run-wide rule
#: texts that matched so far], "marked": [[marker rule name, matched?], ...]}``.
LEAK_RULES = "asyncspec_leak_rules"
#: An async test that pytest-asyncio does not run: [why, the modes it missed]
#: (see :mod:`.outside_modes`).
OUTSIDE_MODES = "asyncspec_outside_modes"
