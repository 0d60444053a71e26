"""What the reporting process gathers from test reports, and prints at the end.

Tests leave their asyncspec data on their reports (:mod:`.report_fields`),
so whichever process receives the reports, a serial run or a pytest-xdist
controller, sees the same data: each claim's figures, each explored test's
summary and the allow-list rules that fired.  One plugin object gathers all
three, so a run that uses none of them pays for one registration; the
claims report module loads only when the first claim's data arrives (or a
report file is asked for).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from . import report_fields

if TYPE_CHECKING:
    from pathlib import Path

    from .allow_rules import AllowRule
    from .claims import ClaimsReport


class RunSummary:
    """Registered in the process that reports (never on an xdist worker)."""

    def __init__(
        self,
        report_path: Path | None,
        allow_rules: list[AllowRule],
        trace_dir: Path | None = None,
    ) -> None:
        self.report_path = report_path
        self.trace_dir = trace_dir
        self.trace_files = 0
        self._claims: ClaimsReport | None = None
        self.exploration_lines: list[str] = []
        self.allow_rules = allow_rules
        #: Texts of allow-list rules that fired in any process.
        self.rules_used: set[str] = set()
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

            self.exploration_lines.append(summary_line(report.nodeid, summary))
        outside = getattr(report, report_fields.OUTSIDE_MODES, None)
        if report.when == "call" and outside:
            reason, modes = outside
            self.outside_modes.setdefault(reason, []).append(report.nodeid)
            self.modes_missed.update(modes.split(", "))
        self.rules_used.update(getattr(report, report_fields.RULES_USED, None) or ())
        self.tests_ran = self.tests_ran or report.when == "call"
        self.trace_files += sum(
            name == report_fields.TRACE_FILE for name, _ in report.user_properties
        )

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
        # "Never fired" only means something once tests ran to the end.
        finished = self.tests_ran and exitstatus not in (
            pytest.ExitCode.USAGE_ERROR,
            pytest.ExitCode.INTERRUPTED,
        )
        unused = [
            rule
            for rule in self.allow_rules
            if finished and not rule.used and rule.text not in self.rules_used
        ]
        if unused:
            terminalreporter.section("asyncspec: allow-list rules that never fired")
            for rule in unused:
                terminalreporter.line(f"{rule.text}  (no blocking step matched it; remove it?)")
        if self.outside_modes:
            from .outside_modes import summary_lines

            terminalreporter.section("asyncspec: async tests outside the modes")
            modes = ", ".join(sorted(self.modes_missed))
            for line in summary_lines(self.outside_modes, modes):
                terminalreporter.line(line)
        if self.exploration_lines:
            terminalreporter.section("asyncspec exploration")
            for line in self.exploration_lines:
                terminalreporter.line(line)
        if self.trace_dir is not None:
            files = "file" if self.trace_files == 1 else "files"
            terminalreporter.line(
                f"asyncspec: {self.trace_files} trace {files} written to {self.trace_dir}"
            )
