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
#: Allow-list rules that fired so far in the process that ran the test.
RULES_USED = "asyncspec_rules_used"
#: A traced test's timeline, for the HTML page (see :mod:`.html_report`).
TIMELINE = "asyncspec_timeline"
#: The user property (``report.user_properties``) naming a traced test's
#: trace file, written with ``--asyncspec-trace-dir``.
TRACE_FILE = "asyncspec_trace_file"
#: The leak allow rules of a test's leak check: ``{"used": [run-wide rule
#: texts that matched so far], "marked": [[marker rule name, matched?], ...]}``.
LEAK_RULES = "asyncspec_leak_rules"
