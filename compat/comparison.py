"""Each mode's outcomes against the baseline's: what differs, and whether it is known."""

from __future__ import annotations

from dataclasses import dataclass

from .known_differences import KNOWN_DIFFERENCES, Known
from .outcomes import ERROR, FAILED, MISSING, PASSED, SKIPPED, XFAILED, Outcome

#: Outcomes that count as a test doing what it should.
GOOD = (PASSED, SKIPPED, XFAILED)


@dataclass
class Difference:
    library: str
    mode: str
    test: str
    baseline: str  # the outcome without the plugin
    outcome: str  # the outcome in this mode
    detail: str
    known: Known | None
    #: Set by confirmation: the test, run again alone, did not repeat both outcomes.
    flaky: bool = False

    @property
    def kind(self) -> str:
        """What changed: broken by the mode, fixed by it, or changed otherwise."""
        if self.baseline in GOOD and self.outcome not in GOOD:
            return "fails only in this mode"
        if self.baseline not in GOOD and self.outcome in GOOD:
            return "passes only in this mode"
        return "outcome changed"


def compare(
    library: str,
    mode: str,
    baseline: dict[str, Outcome],
    results: dict[str, Outcome],
    known: dict[tuple[str, str, str], Known] = KNOWN_DIFFERENCES,
) -> list[Difference]:
    """Every test whose outcome in ``results`` is not its outcome in ``baseline``.

    A failure and an error count as the same outcome (a test that fails in
    its teardown in one mode and in its call in the other still fails);
    every other change is a difference.
    """
    found = []
    for test in sorted({*baseline, *results}):
        base = baseline.get(test, Outcome(MISSING))
        mine = results.get(test, Outcome(MISSING))
        if _same(base.outcome, mine.outcome):
            continue
        found.append(
            Difference(
                library,
                mode,
                test,
                base.outcome,
                mine.outcome,
                mine.detail or base.detail,
                known.get((library, test, mode)),
            )
        )
    return found


def _same(first: str, second: str) -> bool:
    bad = (FAILED, ERROR)
    return first == second or (first in bad and second in bad)


def stale(
    differences: list[Difference],
    libraries: list[str],
    modes: list[str],
    known: dict[tuple[str, str, str], Known] = KNOWN_DIFFERENCES,
) -> list[tuple[str, str, str]]:
    """Known differences of the libraries and modes that ran which did not occur."""
    seen = {(d.library, d.test, d.mode) for d in differences}
    return sorted(
        key for key in known if key[0] in libraries and key[2] in modes and key not in seen
    )


def confirm(difference: Difference, baseline_again: Outcome, mode_again: Outcome) -> None:
    """Mark ``difference`` flaky unless a second run repeats both of its outcomes."""
    difference.flaky = not (
        _same(baseline_again.outcome, difference.baseline)
        and _same(mode_again.outcome, difference.outcome)
    )
