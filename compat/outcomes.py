"""Per-test outcomes read from pytest's junit XML (``-o junit_family=xunit1``).

xunit1 is asked for because it gives each test case its file, from which
the node id (``tests/test_x.py::TestY::test_z[p]``) is rebuilt: the id a
test is run again by, and the id the known differences are listed under.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

PASSED = "passed"
FAILED = "failed"
ERROR = "error"
SKIPPED = "skipped"
XFAILED = "xfailed"
#: The test ran longer than the per-test limit (or its run hit the run limit).
HANG = "hang"
#: The process running the suite died while this test ran.
CRASH = "crash"
#: A test the baseline ran that this run did not report at all.
MISSING = "missing"

#: Characters of a failure's message and text kept.
_DETAIL_LIMIT = 3000


@dataclass(frozen=True)
class Outcome:
    outcome: str
    seconds: float = 0.0
    detail: str = ""


def node_id(file: str, classname: str, name: str) -> str:
    """The pytest node id of a junit test case, from its file, classname and name."""
    module = file.removesuffix(".py").replace("/", ".")
    classes = classname[len(module) + 1 :] if classname.startswith(module + ".") else ""
    return "::".join([file, *(part for part in classes.split(".") if part), name])


def _detail(element: ElementTree.Element) -> str:
    text = f"{element.get('message', '')}\n{element.text or ''}".strip()
    return text[-_DETAIL_LIMIT:]


def _outcome(case: ElementTree.Element) -> Outcome:
    seconds = float(case.get("time", "0") or 0)
    # A test whose call passed and whose teardown failed has an <error>;
    # one whose call failed and whose teardown failed has both: the call's
    # failure is its outcome.
    for tag, outcome in (("failure", FAILED), ("error", ERROR)):
        found = case.find(tag)
        if found is not None:
            return Outcome(outcome, seconds, _detail(found))
    skipped = case.find("skipped")
    if skipped is not None:
        kind = XFAILED if skipped.get("type") == "pytest.xfail" else SKIPPED
        return Outcome(kind, seconds, _detail(skipped))
    return Outcome(PASSED, seconds)


def read_junit(path: Path) -> dict[str, Outcome]:
    """Each test case's outcome by node id.  A collection error is a case too
    (its file as the id, an error as the outcome)."""
    root = ElementTree.parse(path).getroot()
    results: dict[str, Outcome] = {}
    for case in root.iter("testcase"):
        file = case.get("file", "")
        classname = case.get("classname", "")
        name = case.get("name", "")
        key = node_id(file, classname, name) if file else f"{classname}::{name}"
        results[key] = _outcome(case)
    return results
