"""Terminal charts over textual-plotext: scores per round, training loss, runs compared, and a
comparison's strategies (one point per seed)."""

from __future__ import annotations

from textual_plotext import PlotextPlot

from pada_local.ledger.report import Point  # (label, val %, test %)


class ScoreChart(PlotextPlot):
    """Validation and test score (in %) at zero-shot and after each round."""

    def show(self, points: list[Point], title: str = "score per round (%)") -> None:
        plt = self.plt
        plt.clear_figure()
        plt.title(title if points else "no scores yet")
        xs = list(range(len(points)))
        for index, name in ((1, "val"), (2, "test")):
            pts = [(x, p[index]) for x, p in zip(xs, points, strict=True) if p[index] is not None]
            if pts:
                plt.plot([x for x, _ in pts], [y for _, y in pts], label=name, marker="braille")
        if points:
            plt.xticks([float(x) for x in xs], [p[0] for p in points])
            plt.ylim(0, 100)
        self.refresh()


class LossChart(PlotextPlot):
    """Training loss against step, one line per round."""

    def show(self, series: dict[int, list[tuple[int, float]]]) -> None:
        plt = self.plt
        plt.clear_figure()
        plt.title("training loss" if series else "no training steps yet")
        for round_, pts in sorted(series.items()):
            plt.plot([s for s, _ in pts], [v for _, v in pts], label=f"round {round_}", marker="braille")
        if series:
            plt.xlabel("step")
        self.refresh()


class CompareChart(PlotextPlot):
    """Validation score per round, one line per run."""

    def show(self, runs: list[tuple[str, list[Point]]]) -> None:
        plt = self.plt
        plt.clear_figure()
        plt.title("validation score per round (%)")
        labels: list[Point] = max((pts for _, pts in runs), key=len, default=[])  # the longest run's rounds
        for name, pts in runs:
            vals = [(x, p[1]) for x, p in enumerate(pts) if p[1] is not None]
            if vals:
                plt.plot([x for x, _ in vals], [y for _, y in vals], label=name, marker="braille")
        if labels:
            plt.xticks(list(range(len(labels))), [p[0] for p in labels])
            plt.ylim(0, 100)
        self.refresh()


SeedScores = tuple[str, list[tuple[int, float]], float | None]  # (strategy, [(seed, test %)], mean %)


class StrategyChart(PlotextPlot):
    """A comparison's sealed-test score per strategy: one point per seed, a bar at the mean.
    Seeds stand a little apart so that equal scores stay visible as separate points."""

    def show(self, strategies: list[SeedScores]) -> None:
        plt = self.plt
        plt.clear_figure()
        values = [y for _, pts, _ in strategies for _, y in pts]
        plt.title("sealed test per strategy (%): a point per seed, a bar at the mean" if values
                  else "no sealed-test scores yet")
        seeds = sorted({seed for _, pts, _ in strategies for seed, _ in pts})
        for j, seed in enumerate(seeds):
            shift = 0.12 * (j - (len(seeds) - 1) / 2)
            pts = [(i + shift, y) for i, (_, ps, _) in enumerate(strategies) for s, y in ps if s == seed]
            plt.scatter([x for x, _ in pts], [y for _, y in pts], label=f"seed {seed}", marker="●")
        self._means(strategies)
        if values:
            plt.xticks(list(range(len(strategies))), [name for name, _, _ in strategies])
            plt.xlim(-0.5, len(strategies) - 0.5)
            # Differences of a few points matter here: zoom on the scores, not on 0..100.
            plt.ylim(max(0.0, min(values) - 5), min(100.0, max(values) + 5))
        self.refresh()

    def _means(self, strategies: list[SeedScores]) -> None:
        labelled = False
        for i, (_, _, mean) in enumerate(strategies):
            if mean is not None:
                self.plt.plot([i - 0.3, i + 0.3], [mean, mean], marker="─", color="white",
                              label=None if labelled else "mean")
                labelled = True
