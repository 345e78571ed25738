"""How results show themselves in a notebook: an HTML table of rows, shared by every result's ``_repr_html_``.

Results print as one line (their ``__repr__``); a notebook shows that line over a table of their ``rows``,
floats to four significant digits, at most ``MAX_HTML_ROWS`` rows (the rest counted, the data is in
``.rows`` and ``.to_pandas()``).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["MAX_HTML_ROWS", "html_table", "rows_span"]

MAX_HTML_ROWS = 60  # rows one notebook table shows


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def rows_span(rows: Sequence[Mapping[str, Any]]) -> str:
    """What rows keyed by ``matrix`` and ``step`` cover, for a one-line repr.

    Example:
        >>> rows_span([{"matrix": m, "step": k} for m in range(3) for k in range(6)]), rows_span([])
        ('3 matrices, steps 0..5', 'no steps')
    """
    if not rows:
        return "no steps"
    matrices = len({r["matrix"] for r in rows})
    first, last = min(r["step"] for r in rows), max(r["step"] for r in rows)
    steps = f"step {last}" if first == last else f"steps {first}..{last}"
    return f"{matrices} matri{'x' if matrices == 1 else 'ces'}, {steps}"


def html_table(title: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """``title`` as a paragraph over a table of ``rows`` (dicts; ``columns`` default to the first row's keys).

    Example:
        >>> html_table("t", [{"step": 0, "error": 0.123456}])
        '<p>t</p><table><tr><th>step</th><th>error</th></tr><tr><td>0</td><td>0.1235</td></tr></table>'
    """
    columns = list(columns if columns is not None else (rows[0] if rows else ()))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(row.get(c, ''))}</td>" for c in columns) + "</tr>"
        for row in rows[:MAX_HTML_ROWS]
    )
    more = f"<p>... {len(rows) - MAX_HTML_ROWS} more rows</p>" if len(rows) > MAX_HTML_ROWS else ""
    return f"<p>{html.escape(title)}</p><table><tr>{head}</tr>{body}</table>{more}"
