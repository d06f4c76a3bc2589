"""Errors of the load generator: bad arrival specs, model mixes and traces.

All derive from :class:`LoadgenError`, which is an
:class:`~aiosched.errors.InvalidConfig` (so an :class:`~aiosched.errors.AioschedError`
and a :class:`ValueError`): a command line catches one class and exits 2.
"""

from __future__ import annotations

from aiosched.errors import InvalidConfig

__all__ = ["ArrivalSpecError", "LoadgenError", "TraceError", "WorkloadError"]


class LoadgenError(InvalidConfig):
    """The load generator was given something it cannot run."""


class ArrivalSpecError(LoadgenError):
    """An arrival process spec (``"gamma:cv=2"``) or its parameters are malformed."""


class WorkloadError(LoadgenError):
    """A model mix, share, deadline or rate is malformed."""


class TraceError(LoadgenError):
    """A trace file is malformed; the message reads ``file:line: what is wrong``."""
