"""``aiosched report``: figures and an HTML page from load test, compare and timeline files.

:mod:`.inputs` reads and checks the files (standard library only);
:mod:`.figures` draws them (matplotlib, the extra ``plot``); :mod:`.page`
writes the HTML page. :func:`build_report_dir` does all three.
"""

from __future__ import annotations

from .inputs import (
    CompareInput,
    Inputs,
    ReportInputError,
    RunInput,
    TimelineInput,
    load_inputs,
    parse_window,
)

__all__ = [
    "CompareInput",
    "Inputs",
    "ReportInputError",
    "RunInput",
    "TimelineInput",
    "load_inputs",
    "parse_window",
]
