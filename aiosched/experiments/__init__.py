"""Experiments that produce the figures the README quotes (the CLI's ``aiosched experiment``).

- :mod:`.setup`: models by name (sim catalogue, torchvision zoo), and the experiments'
  settings for the backends :func:`aiosched.backends.make_backend` makes.
- :mod:`.workload`: Poisson arrivals in phases, as schedules for :mod:`aiosched.loadgen`
  to send.
- :mod:`.config`: the predictor experiment's settings.
- :mod:`.recording`: solo profiles and workload traces to replay.
- :mod:`.replay`: replaying a recorded trace through a predictor, as if it had been live.
- :mod:`.predictors`: the paper's predictor comparison (Fig. 5) and the drift scenario.
- :mod:`.deadlines`: the scheduler with one predictor against another, on the same arrivals.
"""
