"""Integrations with serving systems; each is an optional extra and imports nothing here.

- :mod:`aiosched.integrations.ray_serve`: a Ray Serve deployment whose replicas
  each embed a :class:`~aiosched.Scheduler` (extra ``ray``).
"""
