"""PNG plots of a comparison: accuracy against cost, learning curves, and the data-size sweep.

Figures are built with ``matplotlib.figure.Figure`` directly (no pyplot), so no global backend
or figure state is touched and nothing needs a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from modal_tf.compare.harness import Comparison
from modal_tf.compare.summary import SummaryRow, summarize

if TYPE_CHECKING:
    from matplotlib.axes import Axes

# Transformers dashed, CNNs solid: the comparison's one question reads off the line style.
LINES = {"vit": "--", "timm_vit": "--", "cnn": "-", "timm": ":"}
MARKERS = "osD^vP*Xh<>p"


def _figure(title: str, xlabel: str, ylabel: str) -> tuple[object, Axes]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 4.8), dpi=110, layout="constrained")
    axes = figure.add_subplot()
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    return figure, axes


def _chance(axes: Axes, comparison: Comparison) -> None:
    """A dotted line at chance accuracy: what "learned nothing" looks like."""
    axes.axhline(1 / len(comparison.data["classes"]), color="gray", linestyle=":", linewidth=1, label="chance")


def _save(figure: object, path: Path) -> Path:
    figure.savefig(path)  # type: ignore[attr-defined]
    return path


def _cost_plot(comparison: Comparison, rows: list[SummaryRow], x_of: str, path: Path) -> Path:
    largest = max(row.fraction for row in rows)
    top = [row for row in rows if row.fraction == largest]
    label = "parameters" if x_of == "parameters" else "training seconds (mean over seeds)"
    figure, axes = _figure(f"Test accuracy vs {label} ({largest:.0%} of the training set)", label, "test accuracy")
    for index, row in enumerate(top):
        x = comparison.costs[row.model].parameters if x_of == "parameters" else row.train_seconds_mean
        colour = f"C{index % 10}"
        axes.errorbar(
            x, row.accuracy_mean, yerr=row.accuracy_std, fmt=MARKERS[index % len(MARKERS)], color=colour, capsize=3
        )
        axes.annotate(row.model, (x, row.accuracy_mean), textcoords="offset points", xytext=(5, 5), fontsize=8)
    axes.set_xscale("log")
    return _save(figure, path)


def _learning_curves(comparison: Comparison, path: Path) -> Path:
    largest = max(run.fraction for run in comparison.runs)
    figure, axes = _figure(
        f"Validation accuracy during training ({largest:.0%} of the training set, mean over seeds)",
        "epochs of the full training set",
        "validation accuracy",
    )
    for index, model in enumerate(comparison.costs):
        curves = [run.curve for run in comparison.runs if run.model == model and run.fraction == largest]
        length = min(len(curve) for curve in curves)
        if not length:
            continue
        epochs = [sum(curve[point][0] for curve in curves) / len(curves) for point in range(length)]
        accuracy = [sum(curve[point][1] for curve in curves) / len(curves) for point in range(length)]
        colour, line = f"C{index % 10}", LINES[comparison.costs[model].family]
        marker = MARKERS[index % len(MARKERS)]
        axes.plot(epochs, accuracy, linestyle=line, marker=marker, label=model, color=colour, alpha=0.85)
    _chance(axes, comparison)
    axes.legend(fontsize=8)
    return _save(figure, path)


def _sweep(comparison: Comparison, rows: list[SummaryRow], path: Path) -> Path:
    figure, axes = _figure(
        "Test accuracy vs training-set size (mean ± std over seeds)", "training images", "test accuracy"
    )
    for index, model in enumerate(comparison.costs):
        mine = sorted((row for row in rows if row.model == model), key=lambda row: row.train_images)
        colour, line = f"C{index % 10}", LINES[mine[0].family]
        axes.errorbar(
            [row.train_images for row in mine],
            [row.accuracy_mean for row in mine],
            yerr=[row.accuracy_std for row in mine],
            linestyle=line,
            marker=MARKERS[index % len(MARKERS)],
            color=colour,
            capsize=3,
            label=model,
            alpha=0.85,
        )
    axes.set_xscale("log")
    sizes = sorted({row.train_images for row in rows})
    axes.set_xticks(sizes, [str(size) for size in sizes])
    axes.minorticks_off()
    _chance(axes, comparison)
    axes.legend(fontsize=8)
    return _save(figure, path)


def write_plots(comparison: Comparison, folder: Path) -> list[Path]:
    """The four PNGs in ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = summarize(comparison.runs)
    return [
        _cost_plot(comparison, rows, "parameters", folder / "accuracy_vs_parameters.png"),
        _cost_plot(comparison, rows, "seconds", folder / "accuracy_vs_training_time.png"),
        _learning_curves(comparison, folder / "learning_curves.png"),
        _sweep(comparison, rows, folder / "data_size_sweep.png"),
    ]
