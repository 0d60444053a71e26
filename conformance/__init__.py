"""CPython's own asyncio tests, run on our loops beside the stock one.

``python -m conformance`` runs modules of the interpreter's
``test.test_asyncio`` package three times: on the stock selector loop, on
:class:`~pytest_asyncspec.clock.virtual_loop.VirtualClockLoop` and on
:class:`~pytest_asyncspec.exploration.exploring_loop.ExploringLoop` (no schedule active),
each put in place of the stock loop, and lists every test that passes on the
stock loop but not on ours.  See ``docs/conformance.md``.
"""
