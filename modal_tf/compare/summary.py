"""From runs to numbers: mean and std over seeds, and what the data-size sweep says about locality.

The claim under test (Dosovitskiy et al. 2020, https://arxiv.org/abs/2010.11929, Sec. 4.2-4.3;
d'Ascoli et al. 2021, https://arxiv.org/abs/2103.10697): a CNN's built-in locality and weight
sharing win when data is scarce, and a ViT, which must learn them, closes the gap as data grows.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from modal_tf.compare.harness import Comparison, RunResult

STILL_IMPROVING = 0.02  # validation accuracy gained over the last validation interval that flags "not converged"


@dataclass(frozen=True)
class SummaryRow:
    """One model at one training fraction, over seeds.

    Attributes:
        model: Catalogue name.
        family: Model family.
        fraction: Training fraction.
        train_images: Training images (equal for every seed).
        seeds: Number of seeds averaged.
        accuracy_mean: Mean test accuracy.
        accuracy_std: Sample standard deviation (n - 1) of test accuracy; 0 for one seed.
        train_seconds_mean: Mean training seconds.
        train_seconds_std: Sample standard deviation of training seconds.
    """

    model: str
    family: str
    fraction: float
    train_images: int
    seeds: int
    accuracy_mean: float
    accuracy_std: float
    train_seconds_mean: float
    train_seconds_std: float


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(runs: list[RunResult]) -> list[SummaryRow]:
    """Mean/std over seeds per model and fraction, in first-appearance order."""
    groups: dict[tuple[str, float], list[RunResult]] = {}
    for run in runs:
        groups.setdefault((run.model, run.fraction), []).append(run)
    rows = []
    for (model, fraction), group in groups.items():
        accuracy = [run.test_accuracy for run in group]
        seconds = [run.train_seconds for run in group]
        rows.append(
            SummaryRow(
                model=model,
                family=group[0].family,
                fraction=fraction,
                train_images=group[0].train_images,
                seeds=len(group),
                accuracy_mean=statistics.fmean(accuracy),
                accuracy_std=_std(accuracy),
                train_seconds_mean=statistics.fmean(seconds),
                train_seconds_std=_std(seconds),
            )
        )
    return rows


@dataclass(frozen=True)
class SweepPoint:
    """Best CNN against best Transformer at one training fraction.

    Attributes:
        fraction: Training fraction.
        train_images: Training images.
        cnn: Best CNN by mean accuracy.
        cnn_accuracy: Its mean accuracy.
        cnn_std: Its std over seeds.
        transformer: Best ViT (ours or timm's) by mean accuracy.
        transformer_accuracy: Its mean accuracy.
        transformer_std: Its std over seeds.
        seeds: Fewest seeds behind either number (1: no noise estimate).
    """

    fraction: float
    train_images: int
    cnn: str
    cnn_accuracy: float
    cnn_std: float
    transformer: str
    transformer_accuracy: float
    transformer_std: float
    seeds: int

    @property
    def gap(self) -> float:
        """CNN minus Transformer accuracy (positive: the CNN leads)."""
        return self.cnn_accuracy - self.transformer_accuracy

    @property
    def noise(self) -> float:
        """Seed spread of the gap: the two stds added in quadrature."""
        return float((self.cnn_std**2 + self.transformer_std**2) ** 0.5)


def sweep_points(rows: list[SummaryRow]) -> list[SweepPoint]:
    """Per fraction (ascending), the best CNN and the best Transformer; empty if a side is missing."""
    points = []
    for fraction in sorted({row.fraction for row in rows}):
        here = [row for row in rows if row.fraction == fraction]
        cnns = [row for row in here if row.family == "cnn"]
        transformers = [row for row in here if row.family in ("vit", "timm_vit")]
        if not cnns or not transformers:
            return []
        cnn = max(cnns, key=lambda row: row.accuracy_mean)
        vit = max(transformers, key=lambda row: row.accuracy_mean)
        points.append(
            SweepPoint(
                fraction,
                here[0].train_images,
                cnn.model,
                cnn.accuracy_mean,
                cnn.accuracy_std,
                vit.model,
                vit.accuracy_mean,
                vit.accuracy_std,
                min(cnn.seeds, vit.seeds),
            )
        )
    return points


def _point_text(point: SweepPoint) -> str:
    leader = "CNN leads" if point.gap > 0 else "Transformer leads" if point.gap < 0 else "tie"
    within = " (within seed noise)" if abs(point.gap) <= point.noise else ""
    return (
        f"{point.train_images} images: best CNN {point.cnn} {point.cnn_accuracy:.3f} ± {point.cnn_std:.3f}, "
        f"best Transformer {point.transformer} {point.transformer_accuracy:.3f} ± {point.transformer_std:.3f}; "
        f"{leader} by {abs(point.gap) * 100:.1f} points{within}"
    )


def locality_verdict(points: list[SweepPoint]) -> str:
    """What the sweep says about "CNNs win on scarce data, the gap narrows with more", with its numbers."""
    if len(points) < 2:
        return "Not tested: the sweep needs at least one CNN, one Transformer and two training fractions."
    lines = [f"- {_point_text(point)}" for point in points]
    smallest, largest = points[0], points[-1]
    if smallest.gap <= 0:
        verdict = "Refuted here: at the smallest training set the CNNs do not lead."
    elif smallest.gap <= smallest.noise:
        verdict = "Not supported here: the CNN lead at the smallest training set is within seed noise."
    elif largest.gap < smallest.gap:
        verdict = (
            f"Supported here: the CNNs lead on scarce data and the gap narrows from "
            f"{smallest.gap * 100:.1f} to {largest.gap * 100:.1f} points as the training set grows."
        )
    else:
        verdict = (
            f"Half supported: the CNNs lead on scarce data, but the gap does not narrow "
            f"({smallest.gap * 100:.1f} -> {largest.gap * 100:.1f} points)."
        )
    if min(point.seeds for point in points) < 2:
        verdict = "One seed only, so no noise estimate. " + verdict
    return "\n".join([verdict, *lines])


def last_epoch_gains(runs: list[RunResult]) -> dict[str, float]:
    """Per model, validation accuracy gained between its last two validations at the largest fraction
    (mean over seeds): how far from converged the budget left it. Models validated once are left out."""
    largest = max(run.fraction for run in runs)
    gains: dict[str, list[float]] = {}
    for run in runs:
        if run.fraction == largest and len(run.curve) > 1:
            gains.setdefault(run.model, []).append(run.curve[-1][1] - run.curve[-2][1])
    return {model: statistics.fmean(values) for model, values in gains.items()}


def budget_caveat(runs: list[RunResult]) -> str:
    """A warning naming the models still improving by more than ``STILL_IMPROVING`` at the end, or ``""``."""
    rising = {model: gain for model, gain in last_epoch_gains(runs).items() if gain > STILL_IMPROVING}
    if not rising:
        return ""
    named = ", ".join(f"{model} (+{gain * 100:.1f})" for model, gain in rising.items())
    return (
        f"Caveat: still improving at the end of the budget (validation accuracy points gained since the "
        f"previous validation): {named}. Their numbers are budget-limited; a longer budget may change the verdict."
    )


def comparison_summary(comparison: Comparison) -> tuple[list[SummaryRow], str]:
    """Summary rows and the locality verdict of a comparison (with the budget caveat, if any)."""
    rows = summarize(comparison.runs)
    caveat = budget_caveat(comparison.runs)
    return rows, locality_verdict(sweep_points(rows)) + (f"\n\n{caveat}" if caveat else "")
