"""``aiosched report``: figures and an HTML page from load test, compare and timeline files.

:mod:`.inputs` reads and checks the files (standard library only);
:mod:`.series` computes what the figures show; :mod:`.figures` draws them
(matplotlib, the extra ``plot``); :mod:`.page` writes the HTML page;
:func:`.build.build_report_dir` does it all (imported on use: it needs matplotlib).
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
