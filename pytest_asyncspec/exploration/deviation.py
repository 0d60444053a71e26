"""A deviation from stock asyncio's order: the unit a schedule is made of.

Its own module because replay tokens, which pytest reads at start-up, need
it and nothing else of the exploring loop.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Deviation:
    """When ``instead_of``'s step number ``step`` (from 0) was the oldest
    ready callback, ``ran`` was picked instead."""

    instead_of: str
    step: int
    ran: str
