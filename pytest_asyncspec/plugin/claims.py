"""Claims: the ``claim`` marker, per-test claim data, and the spec-suite report.

A *claim* is one documented behaviour, identified by an ID such as ``S0.3``
and checked by one or more tests tagged ``@pytest.mark.claim("S0.3", ...)``.
This module

* reads and validates the marker (:func:`claim_tag`, :func:`check_consistent`);
* gathers what each test contributes (:func:`item_payload`): its claim, the
  settings it ran with, and its figures, documented against measured, from
  the timing checks of ``asyncspec_clock`` and from explicit
  :meth:`ClaimRecorder.record` calls;
* aggregates the tests of each claim into one outcome (:class:`ClaimsReport`,
  a pytest plugin object that lives on the controller only, so a pytest-xdist
  run gives the same result as a serial one), writes the JSON report
  atomically and prints the claims table.

Per-test data travels from the process that ran the test to the one that
aggregates as a plain JSON-able dict in the report attribute
:data:`.report_fields.CLAIM`, which pytest's report serialisation (and so
xdist) carries unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, cast

import pytest

from . import report_fields
from .settings import CLAIM_MARKER, Effective, did_you_mean

if TYPE_CHECKING:
    from ..checks.timing import LoopClock

#: The kind letters of a claim (see the spec inventory).
KINDS = {
    "T": "timing",
    "O": "ordering",
    "S": "semantic",
    "V": "version- or platform-conditional",
    "R": "needs real OS concurrency",
}
#: Keywords the claim marker accepts besides its positional ID.
CLAIM_KEYWORDS = ("source", "kind", "title", "control")
#: Version of the JSON report's layout.
SCHEMA_VERSION = 1
#: Width of the terminal table.
TABLE_WIDTH = 100

Outcome = Literal["passed", "failed", "skipped", "error"]
OUTCOMES: tuple[Outcome, ...] = ("passed", "failed", "skipped", "error")
JsonValue: TypeAlias = bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"] | None
JsonDict: TypeAlias = dict[str, JsonValue]

_ID_PATTERN = re.compile(r"\S+")
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")
_QUALIFIED_ERROR = re.compile(r"^(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*(?::|$))")


# -- the marker -----------------------------------------------------------------


@dataclass(frozen=True)
class ClaimTag:
    """What one test's ``claim`` marker says (validated)."""

    id: str
    source: str | None = None
    kind: tuple[str, ...] = ()
    title: str | None = None
    control: bool = False


def _usage(where: str, problem: str, fix: str) -> pytest.UsageError:
    return pytest.UsageError(f"{where}: {problem}; {fix}")


def _tag_from_mark(mark: pytest.Mark, where: str) -> ClaimTag:
    example = f"e.g. @pytest.mark.{CLAIM_MARKER}('S0.3', source='<document title>', kind='T,O')"
    if len(mark.args) != 1:
        raise _usage(
            where,
            f"takes exactly one positional argument, the claim ID, got {len(mark.args)} "
            f"{mark.args!r}",
            f"give the ID first and everything else as keywords ({example})",
        )
    claim_id = mark.args[0]
    if not isinstance(claim_id, str) or not _ID_PATTERN.fullmatch(claim_id):
        raise _usage(
            where,
            f"the claim ID must be a non-empty string without spaces, got {claim_id!r}",
            f"give the inventory ID ({example})",
        )
    unknown = [key for key in mark.kwargs if key not in CLAIM_KEYWORDS]
    if unknown:
        raise _usage(
            where,
            f"unknown keyword {unknown[0]!r}",
            f"{did_you_mean(unknown[0], CLAIM_KEYWORDS)}accepted keywords are "
            f"{', '.join(CLAIM_KEYWORDS)}",
        )
    source = mark.kwargs.get("source")
    title = mark.kwargs.get("title")
    for name, value in (("source", source), ("title", title)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise _usage(
                where,
                f"{name} must be a non-empty string, got {value!r}",
                f"give a {name} text or leave the keyword out",
            )
    control = mark.kwargs.get("control", False)
    if not isinstance(control, bool):
        raise _usage(
            where,
            f"control must be True or False, got {control!r}",
            "write control=True on a negative control, or leave it out",
        )
    return ClaimTag(
        id=claim_id,
        source=None if source is None else " ".join(source.split()),
        kind=parse_kind(mark.kwargs.get("kind"), where),
        title=None if title is None else " ".join(title.split()),
        control=control,
    )


def parse_kind(value: object, where: str) -> tuple[str, ...]:
    """Kind letters from ``"T,O"``; None (keyword left out) gives ``()``."""
    if value is None:
        return ()
    letters = [part.strip() for part in value.split(",")] if isinstance(value, str) else []
    if not letters or any(letter not in KINDS for letter in letters):
        raise _usage(
            where,
            f"invalid kind {value!r}",
            f"give comma-separated letters from {', '.join(KINDS)} "
            "(T timing, O ordering, S semantic, V version-conditional, R real concurrency), "
            "e.g. kind='T,O'",
        )
    repeated = sorted({letter for letter in letters if letters.count(letter) > 1})
    if repeated:
        raise _usage(
            where, f"kind {value!r} repeats {', '.join(repeated)}", "give each letter once"
        )
    return tuple(letters)


def claim_tag(item: pytest.Item) -> ClaimTag | None:
    """The validated claim of ``item``, or None when it has no ``claim`` marker.

    Raises :class:`pytest.UsageError` naming the test for a bad marker, and for
    several claim markers (on the test, its class or module) that disagree.
    """
    marks = list(item.iter_markers(name=CLAIM_MARKER))
    if not marks:
        return None
    where = f"{item.nodeid}: @pytest.mark.{CLAIM_MARKER}"
    tags = [_tag_from_mark(mark, where) for mark in marks]
    distinct = list(dict.fromkeys(tags))
    if len(distinct) > 1:
        shown = " and ".join(_describe(tag) for tag in distinct[:2])
        raise _usage(
            f"{item.nodeid}",
            f"{len(marks)} @pytest.mark.{CLAIM_MARKER} markers disagree ({shown})",
            "a test belongs to one claim: keep one claim marker (check the class and "
            "module markers too)",
        )
    return distinct[0]


def _describe(tag: ClaimTag) -> str:
    words = [repr(tag.id)]
    for name in ("source", "title"):
        value = getattr(tag, name)
        if value is not None:
            words.append(f"{name}={value!r}")
    if tag.kind:
        words.append(f"kind={','.join(tag.kind)!r}")
    if tag.control:
        words.append("control=True")
    return f"claim({', '.join(words)})"


def check_consistent(tagged: Iterable[tuple[str, ClaimTag]]) -> None:
    """Reject tests of one claim ID that give it different sources, kinds or titles.

    A keyword left out says nothing, so it never conflicts.
    """
    seen: dict[tuple[str, str], tuple[str, object]] = {}
    for nodeid, tag in tagged:
        for name in ("source", "kind", "title"):
            value = getattr(tag, name)
            if value in (None, ()):
                continue
            first = seen.setdefault((tag.id, name), (nodeid, value))
            if first[1] != value:
                shown = [",".join(v) if isinstance(v, tuple) else v for v in (first[1], value)]
                raise _usage(
                    f"{nodeid}: @pytest.mark.{CLAIM_MARKER}({tag.id!r})",
                    f"{name}={shown[1]!r} disagrees with {name}={shown[0]!r} of {first[0]} "
                    "(same claim ID)",
                    f"give every test of claim {tag.id} the same {name}, or leave it out on "
                    "all but one",
                )


def docstring_title(doc: str | None) -> str | None:
    """The first sentence of a docstring, whitespace collapsed, final period dropped."""
    if not doc:
        return None
    text = " ".join(doc.split())
    if not text:
        return None
    end = _SENTENCE_END.search(text)
    sentence = text if end is None else text[: end.end()]
    return sentence[:-1] if sentence.endswith(".") else sentence


# -- figures --------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One documented figure beside the measured one."""

    what: str
    documented: JsonValue
    measured: JsonValue
    unit: str | None = None

    def to_json(self) -> JsonDict:
        return {
            "what": self.what,
            "documented": self.documented,
            "measured": self.measured,
            "unit": self.unit,
        }


def _json_value(value: object, what: str, name: str) -> JsonValue:
    try:
        return cast(JsonValue, _json().loads(_json().dumps(value, allow_nan=False)))
    except (TypeError, ValueError):
        raise TypeError(
            f"asyncspec_claim.record({what!r}): {name}={value!r} cannot go into the JSON "
            "report; give a number, a string, a bool, None, or lists/dicts of them"
        ) from None


@dataclass
class ClaimRecorder:
    """Records figures of the current test's claim: the ``asyncspec_claim`` fixture.

    Timing checks of ``asyncspec_clock`` given ``documented=`` are recorded
    without help; use :meth:`record` for any other figure, e.g. a count or a
    result the document prints::

        asyncspec_claim.record("sum over afeat1", documented=70, measured=total)

    Figures recorded in a negative control (``control=True``) are kept out
    of the claim's figures.
    """

    claim_id: str
    control: bool = False
    figures: list[Figure] = field(default_factory=list, init=False)

    def record(
        self,
        what: str,
        *,
        documented: object = None,
        measured: object = None,
        unit: str | None = None,
    ) -> Figure:
        """Add one figure: what it is, the document's value and ours (JSON-able values)."""
        if not isinstance(what, str) or not what.strip():
            raise TypeError(
                f"asyncspec_claim.record: what must be a non-empty string, got {what!r}"
            )
        figure = Figure(
            what=what,
            documented=_json_value(documented, what, "documented"),
            measured=_json_value(measured, what, "measured"),
            unit=unit,
        )
        self.figures.append(figure)
        return figure


def timing_figures(clock: LoopClock | None) -> list[Figure]:
    """The figures of the timing checks that name a documented figure."""
    if clock is None:
        return []
    return [
        Figure(what=check.what, documented=check.documented, measured=check.measured, unit="s")
        for check in clock.checks
        if check.documented is not None
    ]


# -- one test's contribution ----------------------------------------------------


def item_payload(
    item: pytest.Item,
    tag: ClaimTag,
    report: pytest.TestReport,
    *,
    effective: Effective,
    position: int,
    figures: Sequence[Figure],
) -> JsonDict:
    """What one phase report of a claim test carries to the aggregator (JSON-able)."""
    obj = getattr(item, "obj", None)
    return {
        "id": tag.id,
        "source": tag.source,
        "kind": list(tag.kind),
        "title": tag.title,
        "doc_title": docstring_title(getattr(obj, "__doc__", None)),
        "name": getattr(item, "originalname", item.name),
        "control": tag.control,
        "position": position,
        "clock": effective.clock,
        "loop": effective.loop,
        "python": _python_version(),
        "figures": [figure.to_json() for figure in figures],
        "reason": report_reason(report),
    }


def report_reason(report: pytest.TestReport) -> str | None:
    """The first line of a failure message, or the skip reason; None when it passed."""
    if report.skipped:
        wasxfail = getattr(report, "wasxfail", None)
        if wasxfail is not None:
            return f"xfail: {wasxfail}" if wasxfail else "xfail"
        longrepr = report.longrepr
        if isinstance(longrepr, tuple) and len(longrepr) == 3:
            text = str(longrepr[2])
            return text.removeprefix("Skipped: ").strip() or "skipped"
        return _first_line(str(longrepr)) or "skipped"
    if report.failed:
        crash = getattr(report.longrepr, "reprcrash", None)
        message = getattr(crash, "message", None)
        text = message if isinstance(message, str) else str(report.longrepr)
        line = _first_line(text)
        return _QUALIFIED_ERROR.sub(r"\1", line) if line else "failed"
    return None


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


# -- aggregation ------------------------------------------------------------------


@dataclass
class _TestResult:
    nodeid: str
    payload: JsonDict
    phases: dict[str, tuple[str, str | None]] = field(default_factory=dict)

    @property
    def position(self) -> int:
        return cast(int, self.payload["position"])

    @property
    def control(self) -> bool:
        return bool(self.payload["control"])

    def outcome(self) -> tuple[Outcome, str | None]:
        """error (setup or teardown failed) > failed (call failed) > skipped > passed."""
        for when in ("setup", "teardown"):
            outcome, reason = self.phases.get(when, ("passed", None))
            if outcome == "failed":
                return "error", reason
        outcome, reason = self.phases.get("call", ("passed", None))
        if outcome == "failed":
            return "failed", reason
        for when in ("setup", "call", "teardown"):
            outcome, reason = self.phases.get(when, ("passed", None))
            if outcome == "skipped":
                return "skipped", reason
        return "passed", None


def natural_key(text: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key in natural order: S0.2 before S0.10, case-insensitively."""
    chunks = [
        (0, int(chunk), "") if chunk.isdigit() else (1, 0, chunk.casefold())
        for chunk in re.findall(r"\d+|\D+", text)
    ]
    return (*chunks, (2, 0, text))


def _one_or_list(values: Iterable[str]) -> JsonValue:
    """One value when all agree, else the sorted distinct values."""
    distinct = sorted(set(values))
    if len(distinct) == 1:
        return distinct[0]
    return cast(JsonValue, distinct)


def aggregate(results: Iterable[_TestResult]) -> list[JsonDict]:
    """One entry per claim ID, in natural order of the IDs."""
    by_claim: dict[str, list[_TestResult]] = {}
    for result in results:
        by_claim.setdefault(cast(str, result.payload["id"]), []).append(result)
    return [
        _claim_entry(claim_id, sorted(tests, key=lambda t: (t.position, t.nodeid)))
        for claim_id, tests in sorted(by_claim.items(), key=lambda pair: natural_key(pair[0]))
    ]


def _first(values: Iterable[JsonValue]) -> JsonValue:
    return next((value for value in values if value not in (None, [])), None)


def _claim_entry(claim_id: str, tests: list[_TestResult]) -> JsonDict:
    outcomes = [(test, *test.outcome()) for test in tests]
    outcome: Outcome = "passed"
    reason: str | None = None
    wanted: Outcome
    for wanted in ("error", "failed"):
        hit = next(((t, r) for t, o, r in outcomes if o == wanted), None)
        if hit is not None:
            outcome, reason = wanted, hit[1]
            break
    else:
        if all(o == "skipped" for _, o, _ in outcomes):
            outcome, reason = "skipped", outcomes[0][2]
    main = [test for test in tests if not test.control]
    ordered = main + [test for test in tests if test.control]
    title = _first(t.payload["title"] for t in ordered) or _first(
        t.payload["doc_title"] for t in ordered
    )
    figures: list[JsonValue] = []
    for test in main:
        for figure in cast(list[JsonDict], test.payload["figures"]):
            figures.append({**figure, "test": test.nodeid})
    headline = cast(JsonDict, figures[-1]) if figures else None
    return {
        "id": claim_id,
        "title": title if title is not None else ordered[0].payload["name"],
        "source": _first(t.payload["source"] for t in ordered),
        "kind": _first(t.payload["kind"] for t in ordered) or [],
        "outcome": outcome,
        "clock": _one_or_list(cast(str, t.payload["clock"]) for t in tests),
        "loop": _one_or_list(cast(str, t.payload["loop"]) for t in tests),
        "python": _one_or_list(cast(str, t.payload["python"]) for t in tests),
        "documented": None if headline is None else headline["documented"],
        "measured": None if headline is None else headline["measured"],
        "unit": None if headline is None else headline["unit"],
        "figures": figures,
        "reason": reason,
        "tests": [test.nodeid for test in tests],
        "controls": [test.nodeid for test in tests if test.control],
    }


def summary(claims: Sequence[JsonDict], tests: Sequence[_TestResult]) -> JsonDict:
    counts: JsonDict = {outcome: 0 for outcome in OUTCOMES}
    for claim in claims:
        counts[cast(str, claim["outcome"])] = cast(int, counts[cast(str, claim["outcome"])]) + 1
    return {
        **counts,
        "total": len(claims),
        "tests": len(tests),
        "controls": sum(1 for test in tests if test.control),
        "python": _one_or_list(
            [cast(str, t.payload["python"]) for t in tests] or [_python_version()]
        ),
        "clock": _one_or_list(cast(str, t.payload["clock"]) for t in tests) if tests else None,
        "loop": _one_or_list(cast(str, t.payload["loop"]) for t in tests) if tests else None,
        "sources": cast(
            JsonValue, sorted({cast(str, c["source"]) for c in claims if c["source"] is not None})
        ),
    }


# -- the JSON file and the table ------------------------------------------------------


def format_value(value: JsonValue, unit: str | None) -> str:
    """A figure in a few characters: 15.02414 s -> ``15.02 s``, 15 s -> ``15.0 s``."""
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:.4g}" if abs(value) < 1e5 else f"{value:.6g}"
        if not any(mark in text for mark in ".en"):
            text += ".0"
    elif isinstance(value, (bool, int, str)):
        text = str(value)
    else:
        text = _json().dumps(value)
    return f"{text} {unit}" if unit else text


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 3, 0)] + "..."


def table_lines(claims: Sequence[JsonDict], width: int = TABLE_WIDTH) -> list[str]:
    """The claims table: ID, title, outcome, documented / measured (``width`` columns)."""
    figures = [
        ""
        if claim["documented"] is None and claim["measured"] is None
        else f"{format_value(claim['documented'], cast('str | None', claim['unit']))} / "
        f"{format_value(claim['measured'], cast('str | None', claim['unit']))}"
        for claim in claims
    ]
    id_width = max([len("ID")] + [len(cast(str, c["id"])) for c in claims])
    figure_width = min(max([len("DOCUMENTED / MEASURED")] + [len(f) for f in figures]), 30)
    outcome_width = len("skipped")
    title_width = max(width - id_width - outcome_width - figure_width - 6, 20)

    def row(claim_id: str, title: str, outcome: str, figure: str) -> str:
        return (
            f"{claim_id:<{id_width}}  {_clip(title, title_width):<{title_width}}  "
            f"{outcome:<{outcome_width}}  {_clip(figure, figure_width)}"
        ).rstrip()

    lines = [row("ID", "TITLE", "OUTCOME", "DOCUMENTED / MEASURED")]
    for claim, figure in zip(claims, figures, strict=True):
        lines.append(
            row(
                cast(str, claim["id"]),
                cast(str, claim["title"]),
                cast(str, claim["outcome"]),
                figure,
            )
        )
    for claim in claims:
        if claim["reason"] is not None and claim["outcome"] != "passed":
            lines.append(_clip(f"{claim['id']} {claim['outcome']}: {claim['reason']}", width))
    return lines


class ClaimsReport:
    """Aggregates claim tests on the controller; writes the JSON; prints the table.

    Registered as a pytest plugin in the process that reports (never on an
    xdist worker): it only reads the per-test payloads of the reports it
    receives, wherever the tests ran.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.results: dict[str, _TestResult] = {}
        self.write_error: str | None = None
        self.written = False
        self.claims: list[JsonDict] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        payload = getattr(report, report_fields.CLAIM, None)
        if not isinstance(payload, dict):
            return
        result = self.results.setdefault(report.nodeid, _TestResult(report.nodeid, payload))
        result.payload = payload  # the latest phase has every figure
        result.phases[report.when] = (report.outcome, cast("str | None", payload["reason"]))

    def document(self) -> JsonDict:
        tests = list(self.results.values())
        self.claims = aggregate(tests)
        return {
            "schema": SCHEMA_VERSION,
            "claims": cast(JsonValue, self.claims),
            "summary": summary(self.claims, tests),
        }

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        document = self.document()
        if self.path is None or exitstatus == pytest.ExitCode.USAGE_ERROR:
            return
        from .report_files import write_report

        try:
            write_report(self.path, _json().dumps(document, indent=2) + "\n")
            self.written = True
        except OSError as error:
            self.write_error = f"{self.path}: {error.strerror or error}"
            fail_the_run(session)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.claims:
            terminalreporter.section("asyncspec claims")
            for line in table_lines(self.claims):
                terminalreporter.line(line)
            counts = ", ".join(
                f"{sum(1 for c in self.claims if c['outcome'] == o)} {o}"
                for o in OUTCOMES
                if any(c["outcome"] == o for c in self.claims)
            )
            terminalreporter.line(f"{len(self.claims)} claims: {counts}")
        if self.write_error is not None:
            terminalreporter.line(
                f"asyncspec: could not write the claims report {self.write_error}", red=True
            )
        elif self.written:
            terminalreporter.line(f"asyncspec: claims report written to {self.path}")


def fail_the_run(session: pytest.Session) -> None:
    """A report asked for and not written fails an otherwise green run: a CI
    job must not pass without the file it publishes."""
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.USAGE_ERROR


# The report's modules load when a report is written, not at pytest start-up.
def _python_version() -> str:
    import platform

    return platform.python_version()


def _json() -> Any:
    import json

    return json
