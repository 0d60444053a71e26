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


_new_object = object.__new__


def new_deviation(instead_of: str, step: int, ran: str) -> Deviation:
    """``Deviation(instead_of, step, ran)`` for the loop, which records one at
    almost every pick of a random schedule: the frozen ``__init__`` sets each
    field through ``object.__setattr__``, and filling the instance's
    dictionary in the same order makes the same object in half the time."""
    made: Deviation = _new_object(Deviation)
    fields = made.__dict__
    fields["instead_of"] = instead_of
    fields["step"] = step
    fields["ran"] = ran
    return made
