"""Evaluation plots as PNG files for the run's artifacts (ROC, precision-recall, calibration, confusion).

Figures are drawn on `matplotlib.figure.Figure` objects rendered by the Agg canvas, never through pyplot:
no global figure state, no display backend, safe in Airflow workers and threads. The curves come from
`pipelines.evaluation.metrics`, so a plot and the reported number can never disagree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from pipelines.evaluation.metrics import (
    DEFAULT_N_BINS,
    DEFAULT_THRESHOLD,
    UndefinedMetricError,
    as_binary_arrays,
    confusion,
    pr_auc,
    precision_recall_curve,
    reliability_curve,
    roc_auc,
    roc_curve,
)


def write_evaluation_plots(
    y_true: ArrayLike,
    proba: ArrayLike,
    directory: Path,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    n_bins: int = DEFAULT_N_BINS,
) -> dict[str, Path]:
    """Write roc.png, pr.png, calibration.png and confusion.png; return name -> path of those written.

    A curve that is undefined for the data (ROC with a single class, PR without positives) is skipped
    rather than drawn empty; the evaluation report carries the reason.
    """
    y, p = as_binary_arrays(y_true, proba)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    drawers = {
        "roc": _draw_roc,
        "pr": _draw_pr,
        "calibration": _draw_calibration,
        "confusion": _draw_confusion,
    }
    written = {}
    for name, draw in drawers.items():
        figure = Figure(figsize=(5, 4.5), layout="constrained")
        FigureCanvasAgg(figure)
        try:
            draw(figure, y, p, threshold, n_bins)
        except UndefinedMetricError:
            continue
        path = directory / f"{name}.png"
        figure.savefig(path, dpi=100)
        written[name] = path
    return written


def _draw_roc(figure: Figure, y: np.ndarray, p: np.ndarray, threshold: float, n_bins: int) -> None:
    fpr, tpr = roc_curve(y, p)
    axes = figure.add_subplot()
    axes.plot(fpr, tpr, label=f"AUC {roc_auc(y, p):.3f}")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    axes.legend(loc="lower right")


def _draw_pr(figure: Figure, y: np.ndarray, p: np.ndarray, threshold: float, n_bins: int) -> None:
    precision, recall = precision_recall_curve(y, p)
    axes = figure.add_subplot()
    axes.step(recall, precision, where="post", label=f"AP {pr_auc(y, p):.3f}")
    axes.axhline(y.mean(), linestyle="--", color="grey", label="prevalence")
    axes.set(xlabel="recall", ylabel="precision", title="Precision-recall", ylim=(0, 1.02))
    axes.legend(loc="upper right")


def _draw_calibration(figure: Figure, y: np.ndarray, p: np.ndarray, threshold: float, n_bins: int) -> None:
    filled = [b for b in reliability_curve(y, p, n_bins) if b.count]
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    axes.plot([b.mean_predicted for b in filled], [b.fraction_positive for b in filled], marker="o", label="model")
    axes.set(xlabel="mean predicted probability", ylabel="observed positive rate", title="Calibration")
    axes.legend(loc="upper left")


def _draw_confusion(figure: Figure, y: np.ndarray, p: np.ndarray, threshold: float, n_bins: int) -> None:
    counts = confusion(y, p, threshold)
    matrix = np.array([[counts.tn, counts.fp], [counts.fn, counts.tp]])
    axes = figure.add_subplot()
    axes.imshow(matrix, cmap="Blues")
    for (row, column), value in np.ndenumerate(matrix):
        color = "white" if value > matrix.max() / 2 else "black"
        axes.text(column, row, f"{value:,}", ha="center", va="center", color=color)
    axes.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=["negative", "positive"],
        yticklabels=["negative", "positive"],
        xlabel=f"predicted (threshold {threshold:g})",
        ylabel="actual",
        title="Confusion matrix",
    )
