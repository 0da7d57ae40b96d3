"""A pytest plugin: the run fails when a collected test never ran.

Tests can be collected and then silently never run: under pytest-xdist, items that share
a node id collapse into one in the scheduler (schemathesis operations did, 3 of 10 tests
ran), and a plugin can swallow an item. This compares, with multiplicity, the node ids
selected to run (after ``-k``, ``-m``, ``--deselect``, ``--lf`` and the like) with the node
ids that produced a setup report (every test that runs has exactly one, whatever its
outcome: passed, failed, skipped, xfail). Any shortfall prints the missing ids and turns
a passing exit status into a failing one.

Without xdist the selected ids are ``session.items``; with xdist the controller takes
them from the first worker's ``pytest_xdist_node_collection_finished`` (every worker
collects the same list), and the reports arrive at the controller from the workers.
Workers check nothing themselves. A run stopped early (``-x``, ``--maxfail``, an
interruption or a collection error) is not checked: not running the rest is its purpose.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

SELECTED_BUT_NOT_RUN = "collected tests that never ran"


class EveryTestRuns:
    def __init__(self) -> None:
        self.selected: Counter[str] | None = None
        self.ran: Counter[str] = Counter()
        self.missing: Counter[str] = Counter()

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.selected = Counter(item.nodeid for item in session.items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: Sequence[str]) -> None:
        if self.selected is None:
            self.selected = Counter(ids)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "setup":
            self.ran[report.nodeid] += 1

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.selected is None or session.shouldstop or session.shouldfail:
            return
        if exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
            return
        self.missing = self.selected - self.ran
        if self.missing:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.missing:
            return
        selected = self.selected or Counter()
        terminalreporter.section(SELECTED_BUT_NOT_RUN, sep="=", red=True, bold=True)
        for nodeid, count in sorted(self.missing.items()):
            shared = f" ({count} of the {selected[nodeid]} tests with this id)"
            terminalreporter.line(nodeid + (shared if selected[nodeid] > 1 else ""))
        terminalreporter.line(
            f"{sum(self.missing.values())} collected tests never ran; under xdist, tests "
            "that share a node id run only once: give each its own id"
        )


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return  # an xdist worker runs only its share; the controller checks the whole run
    if any(config.getoption(name, False) for name in ("collectonly", "setuponly", "setupplan")):
        return  # nothing is meant to run
    config.pluginmanager.register(EveryTestRuns(), "every-test-runs")
