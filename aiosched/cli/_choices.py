"""The names an option takes, as its ``--help`` lists them.

Written out here, not read from the registries: those live beside torch, and
``--help`` imports none of it. ``tests/test_cli_help.py`` checks each list
against its registry, so a new policy or predictor cannot go unlisted.
"""

from __future__ import annotations

__all__ = [
    "ARRIVALS",
    "BACKENDS",
    "DEVICE_BACKENDS",
    "POLICIES",
    "PREDICTORS",
    "SCENARIOS",
]

#: :data:`aiosched.backends.BACKENDS`.
BACKENDS = "auto, sim, cpu or cuda"
#: The backends an experiment or profile runs on (:data:`aiosched.experiments.setup.BACKENDS`).
DEVICE_BACKENDS = "sim, cpu or cuda"
#: :data:`aiosched.policy.POLICIES`.
POLICIES = "edf, fifo or sequential"
#: :data:`aiosched.predict.PREDICTORS`, and how options are given.
PREDICTORS = (
    "solo, static, ewma, sgd, rls, overlap or oracle, with options as in overlap:quantile=0.9"
)
#: :data:`aiosched.loadgen.arrivals.ARRIVALS`, with their parameters.
ARRIVALS = "poisson, constant, gamma[:cv=C] or bursty[:on=S,off=S,ratio=R]"
#: :data:`aiosched.integrations.mlperf.SCENARIOS`.
SCENARIOS = "server, offline or singlestream"
