"""Experiments that produce the figures the README quotes (the CLI's ``aiosched experiment``).

- :mod:`.setup`: backends and models by name (sim catalogue, torchvision zoo).
- :mod:`.workload`: open-loop Poisson arrivals driven straight into a Scheduler.
- :mod:`.recording`: solo profiles and workload traces to replay.
- :mod:`.replay`: replaying a recorded trace through a predictor, as if it had been live.
- :mod:`.predictors`: the paper's predictor comparison (Fig. 5) and the drift scenario.
- :mod:`.deadlines`: the scheduler with one predictor against another, on the same arrivals.
"""
