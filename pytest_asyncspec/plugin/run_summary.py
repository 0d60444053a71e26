"""What the reporting process gathers from test reports, and prints at the end.

Tests leave their asyncspec data on their reports (:mod:`.report_fields`),
so whichever process receives the reports, a serial run or a pytest-xdist
controller, sees the same data: each claim's figures, each explored test's
summary, its blocking places (allowed or not, from every phase of a test)
and the leak allow-list rules that fired.  One plugin object gathers them
all, so a run that uses none of them pays for one registration; the
claims report module loads only when the first claim's data arrives (or a
report file is asked for).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pytest

from . import report_fields

if TYPE_CHECKING:
    from pathlib import Path

    from ..checks.allow_rules import AllowRule
    from .claims import ClaimsReport


class RunSummary:
    """Registered in the process that reports (never on an xdist worker)."""

    def __init__(
        self,
        report_path: Path | None,
        allow_rules: list[AllowRule],
        trace_dir: Path | None = None,
        *,
        leak_rules: list[AllowRule] | None = None,
    ) -> None:
        self.report_path = report_path
        self.trace_dir = trace_dir
        self.trace_files = 0
        #: Trace files that left steps out: (test id, [path, kept, recorded]).
        self.clipped_traces: list[tuple[str, Any]] = []
        self._claims: ClaimsReport | None = None
        self.exploration_lines: list[str] = []
        #: The summaries of each sharded test's shards, by the test's node id
        #: (merged into one line at the end, see .shards).
        self.shard_summaries: dict[str, list[dict[str, Any]]] = {}
        self.allow_rules = allow_rules
        #: Blocking places no rule allowed, with the test that reported each
        #: (each phase of a test reports its own: nothing is counted twice).
        self.blocking: list[tuple[str, dict[str, Any]]] = []
        #: Blocking places allowed by a rule (each entry names its rule and test).
        self.allowed_blocking: list[dict[str, Any]] = []
        self.leak_rules = leak_rules or []
        #: Texts of run-wide leak rules that matched in any process.
        self.leak_rules_used: set[str] = set()
        #: allow_leaks marker rules by name, and whether any test they reached
        #: had a leak they matched.
        self.marked_leak_rules: dict[str, bool] = {}
        self.tests_ran = False
        #: Async tests the modes could not reach: why -> node ids.
        self.outside_modes: dict[str, list[str]] = {}
        self.modes_missed: set[str] = set()

    def claims(self) -> ClaimsReport:
        if self._claims is None:
            from .claims import ClaimsReport

            self._claims = ClaimsReport(self.report_path)
        return self._claims

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if hasattr(report, report_fields.CLAIM):
            self.claims().pytest_runtest_logreport(report)
        summary = getattr(report, report_fields.EXPLORATION_SUMMARY, None)
        if report.when == "call" and isinstance(summary, dict):
            from .explored_tests import summary_line

            base = summary.get("base")
            if isinstance(base, str):
                if base not in self.shard_summaries:
                    # Its place among the lines: where its first shard reported.
                    self.exploration_lines.append(base)
                self.shard_summaries.setdefault(base, []).append(summary)
            else:
                self.exploration_lines.append(summary_line(report.nodeid, summary))
        leak_rules = getattr(report, report_fields.LEAK_RULES, None)
        if isinstance(leak_rules, dict):
            self.leak_rules_used.update(leak_rules.get("used") or ())
            for name, used in leak_rules.get("marked") or ():
                self.marked_leak_rules[name] = self.marked_leak_rules.get(name, False) or used
        outside = getattr(report, report_fields.OUTSIDE_MODES, None)
        if report.when == "call" and outside:
            reason, modes = outside
            self.outside_modes.setdefault(reason, []).append(report.nodeid)
            self.modes_missed.update(modes.split(", "))
        # Every phase: a fixture's setup or teardown may block, or fire a rule.
        for entry in getattr(report, report_fields.BLOCKING, None) or ():
            self.blocking.append((report.nodeid, entry))
        self.allowed_blocking.extend(
            {**entry, "test": report.nodeid}
            for entry in getattr(report, report_fields.ALLOWED_BLOCKING, None) or ()
        )
        self.tests_ran = self.tests_ran or report.when == "call"
        for name, value in report.user_properties:
            self.trace_files += name == report_fields.TRACE_FILE
            if name == report_fields.TRACE_CLIPPED:
                self.clipped_traces.append((report.nodeid, value))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        # A report file asked for is written even when no test is a claim.
        if self._claims is not None or self.report_path is not None:
            self.claims().pytest_sessionfinish(session, exitstatus)

    def pytest_terminal_summary(
        self, terminalreporter: pytest.TerminalReporter, exitstatus: int
    ) -> None:
        if self._claims is not None:
            self._claims.pytest_terminal_summary(terminalreporter)
        self._blocking_summary(terminalreporter)
        # "Never fired" only means something once tests ran to the end.
        finished = self.tests_ran and exitstatus not in (
            pytest.ExitCode.USAGE_ERROR,
            pytest.ExitCode.INTERRUPTED,
        )
        if finished:
            # Computed from what the reports carried, so the same under xdist.
            used = {entry.get("rule") for entry in self.allowed_blocking}
            _report_unused(
                terminalreporter,
                "asyncspec: allow-list rules that never fired",
                [rule.text for rule in self.allow_rules],
                {str(text) for text in used},
                "no blocking step matched it",
            )
            _report_unused(
                terminalreporter,
                "asyncspec: leak allow-list rules that never fired",
                [
                    *(rule.text for rule in self.leak_rules if not rule.used),
                    *self.marked_leak_rules,
                ],
                self.leak_rules_used | {n for n, used in self.marked_leak_rules.items() if used},
                "no leaked task or coroutine matched it",
            )
        if self.outside_modes:
            from .outside_modes import summary_lines

            terminalreporter.section("asyncspec: async tests outside the modes")
            modes = ", ".join(sorted(self.modes_missed))
            for line in summary_lines(self.outside_modes, modes):
                terminalreporter.line(line)
        if self.exploration_lines:
            terminalreporter.section("asyncspec exploration")
            for line in self.exploration_lines:
                parts = self.shard_summaries.get(line)
                if parts is not None:
                    from .explored_tests import summary_line
                    from .shards import merge

                    line = summary_line(line, merge(line, parts))
                terminalreporter.line(line)
        # A run stopped by a usage error wrote nothing, and says nothing of it.
        if self.trace_dir is not None and exitstatus != pytest.ExitCode.USAGE_ERROR:
            files = "file" if self.trace_files == 1 else "files"
            terminalreporter.line(
                f"asyncspec: {self.trace_files} trace {files} written to {self.trace_dir}"
            )
            for nodeid, (_, kept, recorded) in self.clipped_traces:
                terminalreporter.line(
                    f"asyncspec: the trace file of {nodeid} keeps the first {kept:,} of its "
                    f"{recorded:,} steps (--asyncspec-trace-max-steps sets the cap)",
                    yellow=True,
                )

    def _blocking_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        """One line per blocking place, and per rule the places it allowed."""
        if not self.blocking and not self.allowed_blocking:
            return
        from ..checks.blocking_groups import merge_payloads, summary_line

        root = os.path.join(str(terminalreporter.config.rootpath), "")
        if self.blocking:
            terminalreporter.section("asyncspec: blocking places")
            for nodeid, entry in self.blocking:
                terminalreporter.line(f"{nodeid}: {summary_line(entry, root)}")
        if not self.allowed_blocking:
            return
        by_rule: dict[str, list[dict[str, Any]]] = {}
        for entry in merge_payloads(self.allowed_blocking):
            by_rule.setdefault(str(entry["rule"]), []).append(entry)
        terminalreporter.section("asyncspec: blocking steps allowed by rules")
        for rule, entries in by_rule.items():
            steps = sum(int(entry["steps"]) for entry in entries)
            places = len(entries)
            terminalreporter.line(
                f"{rule} -> {steps} step{'s' if steps != 1 else ''} at "
                f"{places} place{'s' if places != 1 else ''}:"
            )
            for entry in entries:
                terminalreporter.line(f"  {summary_line(entry, root)}")


def _report_unused(
    terminalreporter: pytest.TerminalReporter,
    title: str,
    candidates: list[str],
    used: set[str],
    why: str,
) -> None:
    """A section naming the allow rules that never matched, if there are any."""
    unused = [text for text in candidates if text not in used]
    if not unused:
        return
    terminalreporter.section(title)
    for text in unused:
        terminalreporter.line(f"{text}  ({why}; remove it?)")
