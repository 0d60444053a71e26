"""Moved to :mod:`pytest_asyncspec.exploration.strategies` in 0.2; this path answers until 0.3,
with a DeprecationWarning that names each name's public home."""

from ._lazy import forwarding

__getattr__ = forwarding(__name__, "exploration.strategies")
