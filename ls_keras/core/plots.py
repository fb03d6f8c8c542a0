"""Figures in the style of the paper, drawn with matplotlib's object-oriented API.

`matplotlib.figure.Figure` renders with the Agg backend when saved: no display, no pyplot
state shared with the caller's own figures.
"""

import io
from typing import Dict, List, Optional, Sequence, Tuple

from matplotlib.figure import Figure
import numpy as np

from ls_keras.core.workdir import atomic_write_bytes

Series = Dict[str, np.ndarray]


def reliability_diagram(series: Dict[str, Tuple[Series, np.ndarray]], title: str = "") -> Figure:
  """Figure 2: accuracy against confidence per bin (with the diagonal), histogram beneath.

  `series` maps a legend label to (bin statistics from calibration.bin_statistics, the
  top-1 confidences of every example).
  """
  fig = Figure(figsize=(5.5, 6.5))
  top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
  top.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1, label="perfect calibration")
  edges = None
  for label, (stats, confidences) in series.items():
    filled = stats["count"] > 0
    top.plot(
      stats["confidence"][filled], stats["accuracy"][filled], marker="o", markersize=4, label=label
    )
    edges = stats["edges"]
    bottom.hist(
      confidences,
      bins=edges,
      histtype="step",
      linewidth=1.5,
      weights=np.full(len(confidences), 1.0 / max(len(confidences), 1)),
      label=label,
    )
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
    bottom.set_xticks(edges[:: max(1, (len(edges) - 1) // 5)])
  fig.tight_layout()
  return fig


def projection_grid(
  panels: List[List[Dict]],
  row_titles: Sequence[str],
  col_titles: Sequence[str],
  class_names_per_row: Sequence[Sequence[str]],
) -> Figure:
  """Figure 1: one scatter per (class triple, run/split), each panel on its own scale.

  As in the paper's Figure 1, every panel is scaled to its own points and templates
  (equal aspect), so a tight label-smoothed cluster is as readable as a spread-out one.
  Each panel is {"points": [N, 2], "labels": [N] (0..2), "templates": [3, 2]}.
  """
  rows, cols = len(panels), len(panels[0])
  fig = Figure(figsize=(3.2 * cols, 3.2 * rows))
  axes = fig.subplots(rows, cols, squeeze=False)
  colors = ("tab:blue", "tab:orange", "tab:green")
  for r, row in enumerate(panels):
    for c, panel in enumerate(row):
      points = np.concatenate([panel["points"], panel["templates"]])
      lo, hi = points.min(0), points.max(0)
      half = 0.55 * max(float((hi - lo).max()), 1e-9)
      center = (hi + lo) / 2
      ax = axes[r][c]
      for k in range(3):
        mask = panel["labels"] == k
        ax.scatter(
          panel["points"][mask, 0],
          panel["points"][mask, 1],
          s=6,
          alpha=0.6,
          color=colors[k],
          label=class_names_per_row[r][k],
        )
        ax.scatter(
          *panel["templates"][k], marker="*", s=160, color=colors[k], edgecolor="black", zorder=5
        )
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


def line_plot(
  curves: Dict[str, Tuple[np.ndarray, np.ndarray]],
  xlabel: str,
  ylabel: str,
  hlines: Optional[Dict[str, float]] = None,
  band: Optional[Dict[str, Tuple[np.ndarray, np.ndarray]]] = None,
  title: str = "",
) -> Figure:
  """Curves of y against x (with optional min/max bands and labelled reference lines)."""
  fig = Figure(figsize=(6, 4))
  ax = fig.subplots()
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


def risk_coverage(curves: Dict[str, Tuple[np.ndarray, np.ndarray]], title: str = "") -> Figure:
  """Selective risk against coverage, one line per (model, confidence score).

  The risk-coverage curves of selective classification (Geifman & El-Yaniv 2017; as Xia et
  al. 2025 draw them): `curves` maps a legend label to (coverage [N], risk [N]) from
  `calibration.selective.risk_coverage`, both fractions in [0, 1].
  """
  fig = Figure(figsize=(6, 4))
  ax = fig.subplots()
  for label, (coverage, risk) in curves.items():
    ax.plot(coverage, risk, linewidth=1.5, label=label)
  ax.set_xlabel("coverage (fraction of test examples accepted, most confident first)")
  ax.set_ylabel("selective risk (error rate of the accepted)")
  ax.set_xlim(0, 1)
  ax.set_ylim(bottom=0)
  if title:
    ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  return fig


Band = Tuple[np.ndarray, np.ndarray, np.ndarray]  # mean, low, high


def panels_against(
  x: np.ndarray,
  panels: Sequence[Tuple[str, Dict[str, Band]]],
  xlabel: str,
  title: str = "",
) -> Figure:
  """Side-by-side panels sharing an x axis; each a (y label, {legend label: (mean, low, high)}).

  Used for the report's "when does label smoothing help" figure (test ECE and accuracy
  against training length). A label keeps its colour in every panel.
  """
  fig = Figure(figsize=(5.2 * len(panels), 4))
  axes = fig.subplots(1, len(panels), squeeze=False)
  labels = list(dict.fromkeys(label for _, curves in panels for label in curves))
  colors = {label: f"C{i % 10}" for i, label in enumerate(labels)}
  for ax, (ylabel, curves) in zip(axes[0], panels):
    for label, (mean, low, high) in curves.items():
      ax.plot(x, mean, marker="o", markersize=3, label=label, color=colors[label])
      ax.fill_between(x, low, high, color=colors[label], alpha=0.15)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  return fig


def save(fig: Figure, path: str) -> None:
  """Saves the figure as a PNG, atomically."""
  atomic_write_bytes(path, to_png(fig))


def to_png(fig: Figure) -> bytes:
  """The figure as PNG bytes (120 dpi)."""
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=120)
  return buffer.getvalue()
