"""One style for every nsiter figure: readable fonts, a colour-blind-safe palette, vector output.

The qualitative palette is Okabe & Ito's (2008, "Color Universal Design", https://jfly.uni-koeln.de/color/),
distinguishable under the common colour-vision deficiencies.  Heatmaps use perceptually uniform maps:
``viridis`` for magnitudes and the diverging ``RdBu_r`` for deviations centred at zero.
"""

from __future__ import annotations

from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
from cycler import cycler

__all__ = [
    "DIVERGING",
    "MARKERS",
    "OKABE_ITO",
    "SEQUENTIAL",
    "SERIES_COLORS",
    "color_for",
    "new_axes",
    "use_style",
]

OKABE_ITO = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",  # black
)
# beyond eight series: three of Paul Tol's "muted" colours (https://personal.sron.nl/~pault/), then repeat
EXTRA = ("#882255", "#44AA99", "#999933")
# for many thin lines on white: Okabe-Ito without yellow (too pale for lines), then the extra colours
SERIES_COLORS = tuple(c for c in OKABE_ITO if c != "#F0E442") + EXTRA
# one marker per family of series (filled shapes, distinct at 4-5 pt)
MARKERS = ("o", "s", "^", "D", "v", "P", "*", "<", ">", "h")
SEQUENTIAL = "viridis"
DIVERGING = "RdBu_r"

_RC: dict[str, Any] = {
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "legend.fontsize": 8,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.prop_cycle": cycler(color=OKABE_ITO),
    "axes.grid": True,
    "grid.linestyle": ":",
    "grid.alpha": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.6,
    "lines.markersize": 4,
    "legend.frameon": False,
    "figure.dpi": 100,
    "savefig.bbox": "tight",
    "savefig.dpi": 200,
    "pdf.fonttype": 42,  # embed TrueType: text stays text in the PDF (vector, searchable)
    "ps.fonttype": 42,
    "image.cmap": SEQUENTIAL,
    "mathtext.fontset": "cm",
}


def use_style(**overrides: Any) -> None:
    """Apply the nsiter figure style to matplotlib's global ``rcParams`` (``overrides`` win)."""
    mpl.rcParams.update({**_RC, **overrides})


def color_for(i: int) -> str:
    """The ``i``-th colour of the palette (Okabe–Ito, then ``EXTRA``, cycling)."""
    colours = OKABE_ITO + EXTRA
    return colours[i % len(colours)]


def new_axes(ax: plt.Axes | None, figsize: tuple[float, float] = (4.5, 3.2)) -> plt.Axes:
    """``ax`` itself, or the axes of a new styled figure when ``ax`` is None."""
    if ax is not None:
        return ax
    use_style()
    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax
