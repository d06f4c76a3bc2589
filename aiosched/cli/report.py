"""``aiosched report``: PNG figures and one HTML page from the files other commands wrote.

Give it any mix of ``aiosched loadtest --json`` reports, ``aiosched compare
--json`` documents and ``aiosched loadtest --timeline`` files (recognised by
their content; timelines by ``.jsonl`` or ``.csv``). It writes into ``--out``
a latency CDF per report (deadlines marked), goodput and attainment against
offered load per comparison, predicted against measured latency and a lane
timeline (the paper's Fig. 4) per timeline, and ``index.html``, which embeds
them all and fetches nothing. Needs matplotlib (extra ``plot``). A missing or
malformed input, or the missing extra: one line and exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._parse import fail

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command()
    def report(
        files: Annotated[
            list[Path],
            typer.Argument(
                help="loadtest --json reports, compare --json documents, "
                "loadtest --timeline files (.jsonl or .csv)",
                show_default=False,
            ),
        ],
        out: Annotated[
            Path, typer.Option("--out", help="directory for the PNGs and index.html")
        ] = Path("aiosched-report"),
        window: Annotated[
            str | None,
            typer.Option(
                help="lane timeline window START:END in seconds from the run's first batch "
                "(default: 40 batches from the middle of the run)"
            ),
        ] = None,
    ) -> None:
        """Draw figures and an HTML page from loadtest, compare and timeline files."""
        from ..report.inputs import ReportInputError, load_inputs, parse_window

        try:
            inputs = load_inputs(list(files))
            span = parse_window(window)
        except ReportInputError as exc:
            raise fail(exc) from None
        if out.exists() and not out.is_dir():
            raise fail(f"--out {out}: exists and is not a directory")
        from ..report.build import build_report_dir

        try:
            written = build_report_dir(inputs, out, span)
        except ReportInputError as exc:  # matplotlib missing
            raise fail(exc) from None
        except OSError as exc:
            raise fail(f"cannot write into {out}: {exc.strerror or exc}") from None
        for path in written:
            typer.echo(str(path))
