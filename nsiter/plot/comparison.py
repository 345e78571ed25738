"""Schedule comparison: certified worst-case error and measured error against steps or matmuls."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import offset_copy

from nsiter.plot._data import Rows, groups, require, xy
from nsiter.plot.style import MARKERS, SERIES_COLORS, new_axes

__all__ = ["schedule_comparison", "series_styles"]


def series_styles(names: Sequence[str], family: Mapping[str, str] | None = None) -> dict[str, dict]:
    """A distinct ``(colour, marker)`` per series: the marker says the family, the colour the member.

    Series are ordered by family (the order of ``family``'s values, then first seen), then by name; colours run through
    ``SERIES_COLORS`` in that order and markers through ``MARKERS`` by family, so two series share a
    colour only if they are ``len(SERIES_COLORS)`` apart and then differ in family (marker) unless one
    family has more members than there are colours (then ``ValueError``: no distinct style is left).

    Returns ``{name: {"color", "marker", "family"}}`` in the legend order.
    """
    family = dict(family or {})
    present = {family.get(n, "") for n in names}
    fams = [f for f in dict.fromkeys(family.values()) if f in present]  # the mapping's order first
    fams += [f for f in dict.fromkeys(family.get(n, "") for n in names) if f not in fams]
    ordered = sorted(dict.fromkeys(names), key=lambda n: (fams.index(family.get(n, "")), n))
    out: dict[str, dict] = {}
    seen: set[tuple[str, str]] = set()
    for i, n in enumerate(ordered):
        f = family.get(n, "")
        style = (SERIES_COLORS[i % len(SERIES_COLORS)], MARKERS[fams.index(f) % len(MARKERS)])
        if style in seen:
            raise ValueError(f"no distinct (colour, marker) left for series {n!r} in family {f!r}")
        seen.add(style)
        out[n] = {"color": style[0], "marker": style[1], "family": f}
    return out


def _edge_marks(xs, ys, flags, top: float) -> list[tuple[float, str]]:
    """Where a series leaves the plot: the first point that is missing after data, not finite, or above ``top``.

    Returns ``[(x, text)]``: ``"diverged"`` when the row says so (flag, or a non-finite value), otherwise the
    off-scale value itself.
    """
    seen_data = False
    for x0, y0, flag in zip(xs, ys, flags, strict=True):
        finite = y0 is not None and math.isfinite(y0)
        if finite and y0 <= top:
            seen_data = True
            continue
        if not seen_data:
            continue
        return [(x0, "diverged" if flag or not finite else f"{y0:.3g}")]
    return []


def _draw_edge_marks(ax, marks: list[tuple[float, dict]], top: float, spacing: float = 9.0) -> None:
    """Each series' open marker on the top edge at its ``x``; markers that share an ``x`` are spread
    ``spacing`` points apart, in legend order, so no marker hides another."""
    by_x: dict[float, list[dict]] = {}
    for x0, style in marks:
        by_x.setdefault(x0, []).append(style)
    for x0, styles in by_x.items():
        for j, style in enumerate(styles):
            shift = (j - (len(styles) - 1) / 2) * spacing
            ax.plot(
                [x0],
                [top],
                marker=style["marker"],
                ms=7,
                mfc="white",
                mec=style["color"],
                mew=1.6,
                ls="none",
                clip_on=False,
                zorder=5,
                transform=offset_copy(ax.transData, fig=ax.figure, x=shift, units="points"),
            )


def schedule_comparison(
    rows: Rows,
    ax: plt.Axes | None = None,
    *,
    x: str = "step",
    schedule: str = "schedule",
    certified: str | None = "certified_error",
    measured: str | None = "measured_error",
    diverged: Mapping[str, str] | None = None,
    family: Mapping[str, str] | None = None,
    top: float | None = None,
    legend: bool = True,
) -> plt.Axes:
    """Per schedule: certified worst-case error (solid) and measured error (dashed), one style each.

    Each schedule has its own colour and marker (``series_styles``; the marker says its ``family``).
    Where a series leaves the axes (its value is missing after data, not finite, or above ``top``) its
    marker is drawn open on the top edge (spread sideways where several leave at the same ``x``), and its
    legend entry says where and why: ``diverged`` (the value
    is not finite or the row's flag column ``diverged[column]`` is true) or the off-scale value.  A line
    never just stops, and no note floats in the plot where it could be read as another series'.

    Args:
        rows: one row per schedule and step with columns ``x`` (``step`` or ``matmuls``), the certified
            error ``max |1 - phi_k(x)|`` over the input interval, and the measured error on matrices.
        certified, measured: column names; None omits that kind of line.
        diverged: value column -> boolean flag column (default: ``<certified prefix>_diverged`` columns
            when the rows have them, e.g. ``certified_diverged``, ``measured_diverged``).
        family: schedule -> family name; the legend groups schedules by family.
        top: upper y-limit (default: the data's largest finite value times 2).
    """
    require(rows, x, schedule)
    kinds = [(c, "-") for c in [certified] if c] + [(m, "--") for m in [measured] if m]
    if diverged is None:
        diverged = {
            c: f"{c.split('_')[0]}_diverged" for c, _ in kinds if f"{c.split('_')[0]}_diverged" in rows[0]
        }
    ax = new_axes(ax, figsize=(5.2, 3.6))
    by_name = groups(rows, schedule)
    styles = series_styles([str(n) for n in by_name], family)
    values = [
        float(r[c]) for r in rows for c, _ in kinds if r.get(c) is not None and math.isfinite(float(r[c]))
    ]
    if top is None:
        top = 2 * max((v for v in values if v > 0), default=1.0)
    notes: dict[str, list[str]] = {}  # schedule -> "measured: diverged at 15", ...
    marks: list[tuple[float, dict]] = []  # (x, style) of every open marker on the top edge
    # series drawn later are thinner, so where two coincide the earlier one shows around the later one
    widths = {n: 2.8 - 1.4 * j / (len(styles) - 1) if len(styles) > 1 else None for j, n in enumerate(styles)}
    for name, grp in sorted(by_name.items(), key=lambda item: list(styles).index(str(item[0]))):
        st = styles[str(name)]
        for col, ls in kinds:
            if all(r.get(col) is None for r in grp):
                continue
            xs, ys = xy(grp, x, col)
            shown = [y if y <= top else float("nan") for y in ys]
            ax.plot(
                xs,
                shown,
                ls=ls,
                lw=widths[str(name)],
                marker=st["marker"],
                ms=None if widths[str(name)] is None else 1.5 + 2 * widths[str(name)],
                color=st["color"],
                label=str(name) if ls == "-" else None,
            )
            srt = sorted(grp, key=lambda r: float(r[x]))
            flags = [bool(r.get(diverged.get(col, ""), False)) for r in srt]
            raw = [None if r.get(col) is None else float(r[col]) for r in srt]
            for x0, text in _edge_marks([float(r[x]) for r in srt], raw, flags, top):
                marks.append((x0, st))
                what = col.split("_")[0]
                notes.setdefault(str(name), []).append(f"{what} {text} at {x} {x0:g}")
    _draw_edge_marks(ax, marks, top)
    ax.set_yscale("log", nonpositive="mask")
    ax.set_ylim(top=top)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel({"step": "step $k$", "matmuls": "matrix multiplications"}.get(x, x))
    ax.set_ylabel(r"error $\max |1 - \sigma|$")
    if legend:
        handles = []
        for fam in dict.fromkeys(s["family"] for s in styles.values()):
            if fam:
                handles.append(Line2D([], [], ls="none", label=fam))  # a header row
            handles += [
                Line2D(
                    [],
                    [],
                    color=s["color"],
                    marker=s["marker"],
                    label=("  " if fam else "") + n + (f" ({'; '.join(notes[n])})" if n in notes else ""),
                )
                for n, s in styles.items()
                if s["family"] == fam
            ]
        handles += [Line2D([], [], color="0.3", ls=ls, label=col.replace("_", " ")) for col, ls in kinds]
        if notes:  # only where something does leave the axes
            handles.append(
                Line2D(
                    [], [], color="0.3", marker="o", mfc="white", ls="none", label="open: off the top edge"
                )
            )
        ax.legend(handles=handles, fontsize=7, ncols=2)
    return ax
