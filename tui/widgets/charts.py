"""Terminal charts over textual-plotext: scores per round, training loss, runs compared."""

from __future__ import annotations

from textual_plotext import PlotextPlot

from pada_local.report import Point  # (label, val %, test %)


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
            plt.xticks(xs, [p[0] for p in points])
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
