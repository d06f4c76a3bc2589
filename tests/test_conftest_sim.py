"""The ``sim`` marker of tests/conftest.py: coroutine tests run in virtual time."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from aiosched import simtime

pytest_plugins = ["pytester"]


@pytest.mark.sim
async def test_an_hour_of_sleep_passes_in_virtual_time() -> None:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, simtime.VirtualTimeLoop)
    assert loop.time() == 0.0
    wall = time.monotonic()
    await asyncio.sleep(3600)
    assert loop.time() == pytest.approx(3600)
    assert time.monotonic() - wall < 60  # an hour of virtual time, not of the test's


@pytest.mark.sim(start=1000.0)
async def test_start_sets_the_virtual_clock() -> None:
    loop = asyncio.get_running_loop()
    assert loop.time() == 1000.0
    await asyncio.sleep(2.5)
    assert loop.time() == 1002.5


@pytest.fixture
def answer() -> int:
    return 42


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.sim
async def test_fixtures_and_parameters_are_passed(n: int, answer: int, tmp_path: Path) -> None:
    assert n in (1, 2)
    assert answer == 42
    assert tmp_path.is_dir()
    await asyncio.sleep(n)
    assert asyncio.get_running_loop().time() == n


def test_only_marked_coroutine_tests_run_and_a_failing_one_fails(pytester: pytest.Pytester) -> None:
    # The suite's own conftest and marker registration, in a fresh pytest run.
    here = Path(__file__).parent
    pytester.makeconftest((here / "conftest.py").read_text())
    pytester.makeini(
        """
        [pytest]
        asyncio_mode = strict
        asyncio_default_fixture_loop_scope = function
        markers = sim: virtual time
        """
    )
    pytester.makepyfile(
        """
        import asyncio

        import pytest


        @pytest.mark.sim
        async def test_sim_passes():
            await asyncio.sleep(10)
            assert asyncio.get_running_loop().time() == 10


        @pytest.mark.sim
        async def test_sim_fails():
            await asyncio.sleep(10)
            assert False, "reached the end"


        async def test_unmarked():
            await asyncio.sleep(0)


        @pytest.mark.sim
        def test_sim_on_a_plain_function():
            pass


        @pytest.mark.sim
        @pytest.mark.asyncio
        async def test_sim_and_asyncio():
            await asyncio.sleep(0)


        @pytest.mark.asyncio
        async def test_asyncio_still_works():
            loop = asyncio.get_running_loop()
            assert type(loop).__name__ != "VirtualTimeLoop"
            await asyncio.sleep(0)


        def test_plain():
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, failed=4)
    result.stdout.fnmatch_lines(
        [
            "*_ test_sim_fails _*",
            "E * AssertionError: reached the end",
            "*_ test_unmarked _*",
            "async def functions are not natively supported.",
            "*_ test_sim_on_a_plain_function _*",
            "pytest.mark.sim is for async def tests, not <function test_sim_on_a_plain_function*",
            "*_ test_sim_and_asyncio _*",
            "a test is either marked sim or asyncio, not both",
        ]
    )
