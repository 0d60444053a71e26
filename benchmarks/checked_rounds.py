"""Timed rounds whose every result is checked afterwards, with or without timing.

Shared by the benchmark modules: each builds its rounds in ``setup``, runs one
in ``run`` and checks (and records) it in ``teardown``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

Round = TypeVar("Round")


def run_checked_rounds(
    benchmark: Any,
    run: Callable[[Round], object],
    setup: Callable[[], tuple[tuple[Round], dict[str, Any]]],
    teardown: Callable[[Round], None],
    *,
    rounds: int,
    warmup: int,
) -> bool:
    """Run ``rounds`` timed rounds after ``warmup`` untimed ones, each checked
    by ``teardown``; False (and one checked round) under ``--benchmark-disable``,
    where pytest-benchmark runs the function once and would skip the teardown."""
    if benchmark.disabled:

        def run_and_check(one: Round) -> None:
            run(one)
            teardown(one)

        benchmark.pedantic(run_and_check, setup=setup, rounds=1, iterations=1)
        return False
    benchmark.pedantic(
        run, setup=setup, teardown=teardown, rounds=rounds, warmup_rounds=warmup, iterations=1
    )
    return True
