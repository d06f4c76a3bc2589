"""``python -m aiosched.cli``: the same command line as the ``aiosched`` script."""

from __future__ import annotations

from . import main

main()
