"""Bridges from other systems to the scheduler; each is an optional extra, imported on use.

- :mod:`aiosched.integrations.ray_serve`: a Ray Serve deployment whose replicas
  each embed a :class:`~aiosched.Scheduler` (extra ``ray``).
- :mod:`aiosched.integrations.mlperf`: MLPerf LoadGen drives an embedded
  scheduler (extra ``mlperf``; ``aiosched mlperf``).
"""
