"""Figures in the style of the paper, drawn with matplotlib's Agg backend (no display needed)."""

import io
from typing import Dict, List, Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=wrong-import-position
import numpy as np  # noqa: E402

from ls_keras.core.workdir import atomic_write_bytes  # noqa: E402  (after matplotlib.use)

Series = Dict[str, np.ndarray]


def reliability_diagram(series: Dict[str, Tuple[Series, np.ndarray]], title: str = "") -> plt.Figure:
  """Figure 2: accuracy against confidence per bin (with the diagonal), histogram beneath.

  `series` maps a legend label to (bin statistics from calibration.bin_statistics, the
  top-1 confidences of every example).
  """
  fig, (top, bottom) = plt.subplots(2, 1, figsize=(5.5, 6.5), sharex=True,
                                    gridspec_kw={"height_ratios": [3, 1]})
  top.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1, label="perfect calibration")
  edges = None
  for label, (stats, confidences) in series.items():
    filled = stats["count"] > 0
    top.plot(stats["confidence"][filled], stats["accuracy"][filled], marker="o", markersize=4, label=label)
    edges = stats["edges"]
    bottom.hist(confidences, bins=edges, histtype="step", linewidth=1.5,
                weights=np.full(len(confidences), 1.0 / max(len(confidences), 1)), label=label)
  top.set_ylabel("accuracy")
  top.set_xlim(0, 1)
  top.set_ylim(0, 1)
  top.legend(loc="upper left", fontsize=8)
  top.grid(alpha=0.3)
  if title:
    top.set_title(title)
  bottom.set_xlabel("confidence (top-1 probability)")
  bottom.set_ylabel("fraction")
  bottom.set_yscale("log")
  bottom.grid(alpha=0.3)
  if edges is not None:
    bottom.set_xticks(edges[::max(1, (len(edges) - 1) // 5)])
  fig.tight_layout()
  return fig


def projection_grid(panels: List[List[Dict]], row_titles: Sequence[str], col_titles: Sequence[str],
                    class_names_per_row: Sequence[Sequence[str]]) -> plt.Figure:
  """Figure 1: one scatter per (class triple, run/split); equal axes within a row.

  Each panel is {"points": [N, 2], "labels": [N] (0..2), "templates": [3, 2]}.
  """
  rows, cols = len(panels), len(panels[0])
  fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
  colors = ("tab:blue", "tab:orange", "tab:green")
  for r, row in enumerate(panels):
    points = np.concatenate([p["points"] for p in row] + [p["templates"] for p in row])
    lo, hi = points.min(0), points.max(0)
    pad = 0.05 * (hi - lo).max()
    half = (hi - lo).max() / 2 + pad
    center = (hi + lo) / 2
    for c, panel in enumerate(row):
      ax = axes[r][c]
      for k in range(3):
        mask = panel["labels"] == k
        ax.scatter(panel["points"][mask, 0], panel["points"][mask, 1], s=6, alpha=0.6, color=colors[k],
                   label=class_names_per_row[r][k])
        ax.scatter(*panel["templates"][k], marker="*", s=160, color=colors[k], edgecolor="black", zorder=5)
      ax.set_xlim(center[0] - half, center[0] + half)
      ax.set_ylim(center[1] - half, center[1] + half)
      ax.set_aspect("equal")
      ax.tick_params(labelsize=6)
      if r == 0:
        ax.set_title(col_titles[c], fontsize=9)
      if c == 0:
        ax.set_ylabel(row_titles[r], fontsize=9)
        ax.legend(fontsize=7, loc="best", markerscale=2)
  fig.tight_layout()
  return fig


def line_plot(curves: Dict[str, Tuple[np.ndarray, np.ndarray]], xlabel: str, ylabel: str,
              hlines: Optional[Dict[str, float]] = None, band: Optional[Dict[str, Tuple[np.ndarray, np.ndarray]]] = None,
              title: str = "") -> plt.Figure:
  """Curves of y against x (with optional min/max bands and labelled reference lines)."""
  fig, ax = plt.subplots(figsize=(6, 4))
  for label, (x, y) in curves.items():
    (line,) = ax.plot(x, y, marker="o", markersize=3, label=label)
    if band and label in band:
      ax.fill_between(x, band[label][0], band[label][1], color=line.get_color(), alpha=0.2)
  for label, value in (hlines or {}).items():
    ax.axhline(value, color="gray", linestyle="--", linewidth=1)
    ax.annotate(label, (ax.get_xlim()[0], value), fontsize=8, va="bottom", color="gray")
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  if title:
    ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  return fig


def save(fig: plt.Figure, path: str) -> None:
  """Saves a PNG atomically and closes the figure."""
  atomic_write_bytes(path, to_png(fig))


def to_png(fig: plt.Figure) -> bytes:
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=120)
  plt.close(fig)
  return buffer.getvalue()
