"""The contract kits catch what they promise to catch, and the example that uses one runs."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import runpy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import aiosched
from aiosched import simtime
from aiosched.backends.base import DoneCallback
from aiosched.backends.sim import SimBackend
from aiosched.errors import InvalidConfig
from aiosched.spec import ModelSpec
from aiosched.testing import check_backend, check_predictor

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "custom_predictor.py"


class _Sound(aiosched.Predictor):
    """A minimal predictor that keeps the contract: solo latency per model, times 1.5 per
    co-runner. The broken ones below each break one clause of it."""

    def __init__(self, default: float = 0.01) -> None:
        super().__init__()
        self.default = default
        self._solo: dict[str, float] = {}

    def predict(
        self, model: str, batch_size: int, running: Sequence[aiosched.Running], now: float
    ) -> float:
        return self._solo.get(model, self.default) * batch_size * 1.5 ** len(running)

    def _learn(self, execution: aiosched.Execution) -> None:
        if execution.ok:
            self._solo[execution.model] = execution.latency / execution.batch_size

    def observe(self, model: str, batch_size: int, latency: float) -> None:
        self._solo[model] = latency / batch_size

    def knows(self, model: str) -> bool:
        return model in self._solo

    def forget(self, model: str) -> None:
        self._solo.pop(model, None)


class _NanBeforeLearning(_Sound):
    def predict(
        self, model: str, batch_size: int, running: Sequence[aiosched.Running], now: float
    ) -> float:
        return super().predict(model, batch_size, running, now) if self.knows(model) else 0.0


class _LearnOverridden(_Sound):
    def learn(self, execution: aiosched.Execution) -> None:  # skips the base class's scoring
        self._learn(execution)


class _SettingKeptElsewhere(_Sound):
    def __init__(self, default: float = 0.01, margin: float = 1.0) -> None:
        super().__init__(default)
        self._margin = margin  # params() cannot find it as self.margin


class _CloneKeepsState(_Sound):
    def clone(self) -> _CloneKeepsState:
        return copy.deepcopy(self)


class _IgnoresProfiles(_Sound):
    def observe(self, model: str, batch_size: int, latency: float) -> None:
        pass


class _ForgetsNothing(_Sound):
    def forget(self, model: str) -> None:
        pass  # a model registered again under the name would inherit the old one's latency


class _ForgetsEverything(_Sound):
    def forget(self, model: str) -> None:
        self._solo.clear()


def test_a_sound_predictor_passes() -> None:
    check_predictor(_Sound())


@pytest.mark.parametrize(
    ("predictor", "clause"),
    [
        (_NanBeforeLearning(), "[fresh]"),
        (_LearnOverridden(), "[error]"),
        (_SettingKeptElsewhere(), "[params]"),
        (_CloneKeepsState(), "[clone]"),
        (_IgnoresProfiles(), "[seed]"),
        (_ForgetsNothing(), "[forget]"),
        (_ForgetsEverything(), "[forget]"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, aiosched.Predictor) else v,
)
def test_check_predictor_names_the_broken_clause(
    predictor: aiosched.Predictor, clause: str
) -> None:
    with pytest.raises(AssertionError) as info:
        check_predictor(predictor)
    assert str(info.value).startswith(clause), str(info.value)


def test_check_predictor_leaves_its_argument_as_it_was() -> None:
    predictor = _Sound()
    check_predictor(predictor)
    assert not predictor.knows("resnet50") and predictor.error().count == 0


class _ReversedOutputs(SimBackend):
    def submit(
        self, lane: int, spec: ModelSpec, inputs: Sequence[Any], on_done: DoneCallback
    ) -> None:
        def reversed_outputs(c: aiosched.Completion) -> None:
            outputs = None if c.outputs is None else list(reversed(c.outputs))
            on_done(aiosched.Completion(outputs, c.error, c.start, c.end))

        super().submit(lane, spec, inputs, reversed_outputs)


class _CompletesInsideSubmit(SimBackend):
    def submit(
        self, lane: int, spec: ModelSpec, inputs: Sequence[Any], on_done: DoneCallback
    ) -> None:
        now = self._loop.time() if self._loop is not None else 0.0
        on_done(aiosched.Completion([2 * x for x in inputs], None, now, now))


class _AcceptsAnything(SimBackend):
    def load(self, spec: ModelSpec) -> None:
        with contextlib.suppress(InvalidConfig):
            super().load(spec)


class _RaisesModelErrors(SimBackend):
    def submit(
        self, lane: int, spec: ModelSpec, inputs: Sequence[Any], on_done: DoneCallback
    ) -> None:
        if spec.name == "broken":
            raise ValueError("the model failed")
        super().submit(lane, spec, inputs, on_done)


class _UnloadRefusesUnknownNames(SimBackend):
    def unload(self, name: str) -> None:
        if name not in self._loaded:
            raise KeyError(name)
        super().unload(name)


class _UnloadForgetsTheName(SimBackend):
    def unload(self, name: str) -> None:
        super().unload(name)
        self._gone = {*getattr(self, "_gone", ()), name}

    def load(self, spec: ModelSpec) -> None:
        if spec.name in getattr(self, "_gone", ()):
            raise InvalidConfig(f"{spec.name} was unloaded")
        super().load(spec)


@pytest.mark.parametrize(
    ("backend", "clause"),
    [
        (_ReversedOutputs(lanes=2), "[outputs]"),
        (_CompletesInsideSubmit(lanes=2), "[submit]"),
        (_AcceptsAnything(lanes=2), "[load]"),
        (_RaisesModelErrors(lanes=2), "[submit]"),
        (_UnloadRefusesUnknownNames(lanes=2), "[unload]"),
        (_UnloadForgetsTheName(lanes=2), "[unload]"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, aiosched.Backend) else v,
)
def test_check_backend_names_the_broken_clause(backend: aiosched.Backend, clause: str) -> None:
    with pytest.raises(AssertionError) as info:
        check_backend(backend)
    assert str(info.value).startswith(clause), str(info.value)


def test_check_backend_closes_the_backend() -> None:
    backend = SimBackend(lanes=2)
    check_backend(backend)

    async def start_again() -> None:
        await backend.start(backend.default_clock(asyncio.get_running_loop()))

    with pytest.raises(RuntimeError):  # the sim backend refuses a start after aclose()
        simtime.run(start_again())


def test_the_custom_predictor_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    out = capsys.readouterr().out
    assert "keeps the predictor contract" in out
    assert "requests answered" in out
