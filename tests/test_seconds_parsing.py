"""One parser of durations for every setting and argument that takes seconds
(the blocking threshold, max_blocking, hang_after, the stall and time
budgets): the same values accepted, the same words for off, one message."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from pytest_asyncspec.clock.ticks import parse_seconds, parse_seconds_or_off


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(0.25, 0.25), (3, 3.0), (" 2 ", 2.0), ("1e-3", 0.001), (Decimal("0.5"), 0.5)],
)
def test_a_positive_number_or_its_text_is_read_as_seconds(value: object, seconds: float) -> None:
    assert parse_seconds(value, "x", example="1") == seconds


@pytest.mark.parametrize(
    "value",
    [
        "abc",
        "",
        "nan",
        "inf",
        "-inf",
        "-1",
        "0",
        "0.0",
        0,
        -0.5,
        float("nan"),
        float("inf"),
        True,
        False,
        None,
        [1],
        "1h",
    ],
)
def test_anything_else_is_an_error_naming_what_and_showing_the_value(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^invalid blocking threshold ") as raised:
        parse_seconds(value, "blocking threshold", example="0.1")
    assert str(raised.value) == (
        f"invalid blocking threshold {value!r}; expected a positive number of seconds (e.g. 0.1)"
    )


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90.0), ("30m", 1800.0), ("1h", 3600.0), (" 2D ", 172800.0)]
)
def test_with_units_text_may_end_with_one(text: str, seconds: float) -> None:
    assert parse_seconds(text, "stall_budget", example="1h", units=True) == seconds


@pytest.mark.parametrize("value", [None, "off", "OFF", " none "])
def test_only_words_switch_a_duration_off(value: object) -> None:
    assert parse_seconds_or_off(value, "hang_after", example="20") is None


@pytest.mark.parametrize("value", [0, "0", "no", "false"])
def test_zero_is_a_bad_duration_not_a_switch(value: object) -> None:
    with pytest.raises(
        ValueError, match=r"expected a positive number of seconds \(e.g. 20\) or 'off'$"
    ):
        parse_seconds_or_off(value, "hang_after", example="20")


def test_units_are_named_in_the_message_when_accepted() -> None:
    with pytest.raises(ValueError, match=r"^invalid time_budget ") as raised:
        parse_seconds_or_off("1 week", "time_budget", example="24h, 7d", units=True)
    assert str(raised.value) == (
        "invalid time_budget '1 week'; expected a positive time in seconds, "
        "optionally with a unit (e.g. 24h, 7d) or 'off'"
    )
