"""The run report: `data` gathers it from the state database, `render` writes it as one HTML file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sqlalchemy import Engine

from console.report.data import report_data
from console.report.render import render_html


def write_report(engine: Engine, run_id: int, path: Path) -> int:
    """Write the HTML report of a run to `path` (atomically); returns its size in bytes."""
    with engine.connect() as conn:
        page = render_html(report_data(conn, run_id)).encode("utf-8")
    directory = path.resolve().parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(page)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(page)


__all__ = ["render_html", "report_data", "write_report"]
