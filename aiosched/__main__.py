"""``python -m aiosched``: the same command line as the ``aiosched`` script."""

from __future__ import annotations

from aiosched.cli import main

main()
