"""Plots of nsiter data: one style, one module per kind of figure.

Every function takes data (tidy rows or a matrix) and an optional ``ax``, draws, and returns the Axes;
none computes the science (the experiments and records do).  Call ``use_style()`` once per figure.
"""

from nsiter.plot._data import matrix_from_rows, matrix_to_rows
from nsiter.plot.comparison import schedule_comparison, series_styles
from nsiter.plot.floors import dtype_floors
from nsiter.plot.heatmaps import gram_heatmap, identity_deviation_heatmap
from nsiter.plot.scalar import scalar_map
from nsiter.plot.style import OKABE_ITO, use_style
from nsiter.plot.trajectories import QUANTITY_LABELS, singular_value_trajectories, spectral_distance

__all__ = [
    "OKABE_ITO",
    "QUANTITY_LABELS",
    "dtype_floors",
    "gram_heatmap",
    "identity_deviation_heatmap",
    "matrix_from_rows",
    "matrix_to_rows",
    "scalar_map",
    "schedule_comparison",
    "series_styles",
    "singular_value_trajectories",
    "spectral_distance",
    "use_style",
]
