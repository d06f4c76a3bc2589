"""Bridges from other systems to the scheduler; each needs its own extra (imported on use)."""
