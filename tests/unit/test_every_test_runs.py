"""tests/every_test_runs.py: a run fails when a collected test never ran, with and without
pytest-xdist, and only then.

Each test runs pytest in a subprocess on a small project (pytester), with the plugin
loaded by ``-p`` as tests/conftest.py loads it for this suite.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The suite's other plugins triple the start-up time of every run, and these small
# projects need none of them.
BARE = [f"-pno:{name}" for name in ("schemathesis", "hypothesispytest", "asyncio", "anyio")]
PLUGIN = [*BARE, "-p", "tests.every_test_runs"]
XDIST = ["-n", "2", "--dist", "loadscope"]
NEVER_RAN = "collected tests that never ran"

# Three tests under one node id: what a parametrization with colliding ids leaves, and
# what schemathesis' operations were under pytest 9.2.
SHARED_ID_CONFTEST = """
import pytest


def pytest_pycollect_makeitem(collector, name, obj):
    copies = range(getattr(obj, "copies", 0))
    items = [pytest.Function.from_parent(collector, name=name, callobj=obj) for _ in copies]
    return items or None
"""
SHARED_ID_TESTS = """
def test_shared():
    pass


test_shared.copies = 3


def test_alone():
    pass
"""
DISTINCT_TESTS = """
import pytest


@pytest.mark.parametrize("n", range(4))
def test_numbered(n):
    pass


def test_other():
    pass


class TestGroup:
    def test_method(self):
        pass
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # so that -p finds tests.every_test_runs
    return pytester


def test_tests_sharing_a_node_id_dropped_by_xdist_fail_the_run(project: pytest.Pytester) -> None:
    project.makeconftest(SHARED_ID_CONFTEST)
    project.makepyfile(test_shared=SHARED_ID_TESTS)
    unchecked = project.runpytest_subprocess(*XDIST, *BARE)
    assert unchecked.ret == pytest.ExitCode.OK  # the gap this plugin exists for: silent
    unchecked.assert_outcomes(passed=2)

    checked = project.runpytest_subprocess(*XDIST, *PLUGIN)
    assert checked.ret == pytest.ExitCode.TESTS_FAILED
    checked.stdout.fnmatch_lines(
        [
            f"*{NEVER_RAN}*",
            "test_shared.py::test_shared (2 of the 3 tests with this id)",
            "2 collected tests never ran*",
        ]
    )


def test_tests_sharing_a_node_id_all_run_without_xdist(project: pytest.Pytester) -> None:
    project.makeconftest(SHARED_ID_CONFTEST)
    project.makepyfile(test_shared=SHARED_ID_TESTS)
    result = project.runpytest_subprocess(*PLUGIN)
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=4)
    assert NEVER_RAN not in result.stdout.str()


def test_a_test_that_never_reports_fails_the_run_without_xdist(project: pytest.Pytester) -> None:
    project.makeconftest(
        """
        def pytest_runtest_protocol(item, nextitem):
            if item.name == "test_swallowed":
                return True  # claims the test, runs nothing, reports nothing
            return None
        """
    )
    project.makepyfile(
        """
        def test_swallowed():
            assert False


        def test_kept():
            pass
        """
    )
    result = project.runpytest_subprocess(*PLUGIN)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [f"*{NEVER_RAN}*", "test_a_test_that_never_reports*::test_swallowed"]
    )


@pytest.mark.parametrize(
    ("options", "passed"),
    [
        ([], 6),
        (XDIST, 6),
        ([*XDIST, "-k", "numbered and not 2"], 3),
        (["--deselect", "test_distinct.py::test_other"], 5),
        ([*XDIST, "--deselect", "test_distinct.py::test_other"], 5),
    ],
    ids=["in-process", "xdist", "xdist -k", "--deselect", "xdist --deselect"],
)
def test_a_run_of_every_selected_test_passes(
    project: pytest.Pytester, options: list[str], passed: int
) -> None:
    project.makepyfile(test_distinct=DISTINCT_TESTS)
    result = project.runpytest_subprocess(*PLUGIN, *options)
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=passed)
    assert NEVER_RAN not in result.stdout.str()


@pytest.mark.parametrize("distributed", [False, True], ids=["in-process", "xdist"])
def test_rerunning_only_the_last_failures_passes(
    project: pytest.Pytester, distributed: bool
) -> None:
    project.makepyfile(
        test_flaky="""
        from pathlib import Path


        def test_fixed_later():
            assert Path("fixed").exists()


        def test_fine():
            pass
        """
    )
    spread = XDIST if distributed else []
    assert project.runpytest_subprocess(*PLUGIN, *spread).ret == pytest.ExitCode.TESTS_FAILED
    (project.path / "fixed").touch()
    rerun = project.runpytest_subprocess(*PLUGIN, *spread, "--lf")
    assert rerun.ret == pytest.ExitCode.OK
    rerun.assert_outcomes(passed=1)
    assert NEVER_RAN not in rerun.stdout.str()


def test_a_run_stopped_at_the_first_failure_is_not_reported(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        def test_fails():
            assert False


        def test_not_reached():
            pass
        """
    )
    result = project.runpytest_subprocess(*PLUGIN, "-x")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert NEVER_RAN not in result.stdout.str()
