"""Moved to :mod:`pytest_asyncspec.tracing.step_log` in 0.2; this path answers until 0.3,
with a DeprecationWarning that names each name's public home."""

from ._lazy import forwarding

__getattr__ = forwarding(__name__, "tracing.step_log")
