"""The values exploration takes (schedules, strategy, depth, seed), parsed
the same way wherever they come from: ``explore()``'s arguments, or the
plugin's flags, ini keys and marker.

Standard library only: the explorer runs in scripts without pytest, and the
plugin's settings table loads this module at every start-up.
"""

from __future__ import annotations

STRATEGIES = ("mix", "fifo", "random", "pct")
DEFAULT_DEPTH = 3
MAX_DEPTH = 10


def parse_strategy(value: object) -> str:
    if value not in STRATEGIES:
        raise ValueError(
            f"invalid strategy {value!r}; expected one of "
            f"{', '.join(repr(choice) for choice in STRATEGIES)}"
        )
    return str(value)


def whole_number(value: object, what: str, low: int, high: int | None, example: str) -> int:
    """``value`` as a whole number from ``low`` to ``high`` (None: no upper
    limit), else a ValueError naming ``what`` and an ``example``."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().lstrip("+").isdigit():
        number = int(value.strip())
    if number is None or number < low or (high is not None and number > high):
        limits = f"from {low} to {high}" if high is not None else f"{low} or more"
        raise ValueError(f"invalid {what} {value!r}; expected a whole number {limits} ({example})")
    return number


def parse_schedules(value: object) -> int:
    return whole_number(value, "schedules", 0, None, "0 turns exploration off")


def parse_depth(value: object) -> int:
    return whole_number(
        value, "depth", 1, MAX_DEPTH, "PCT's number of ordering constraints a bug needs"
    )


def parse_seed(value: object) -> int | None:
    """A whole number, or 'random' (None: a fresh seed for each run)."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "random"):
        return None
    return whole_number(value, "seed", 0, 2**63 - 1, "or 'random'")
