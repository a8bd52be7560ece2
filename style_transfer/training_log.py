"""The training log: loss rows in a CSV file, and their plot as a PNG (matplotlib)."""

import csv
from pathlib import Path

from utils import atomic_file, write_error


class CsvLog:
    """Loss rows appended as they come; on resume, rows past the checkpoint are dropped. A row with a loss term the
    file has no column for (a run resumed with --resume-anyway and a new term, e.g. --tv-weight) grows the header:
    the file is rewritten whole (atomically) with the new column, empty in the rows before."""

    def __init__(self, path: Path, keep_until: int = 0):
        self.path = path
        self._rows: list[dict] = []
        if keep_until and path.is_file():
            with path.open(newline="") as file:
                self._rows = [r for r in csv.DictReader(file) if int(r["step"]) <= keep_until]
        self._fields: list[str] | None = list(self._rows[0]) if self._rows else None
        self._rewrite()

    def write(self, step: int, elapsed: float, losses: dict[str, float]) -> None:
        row = {"step": step, "elapsed_s": f"{elapsed:.2f}", **{k: f"{v:.6g}" for k, v in losses.items()}}
        self._rows.append(row)
        new_fields = [name for name in row if name not in (self._fields or [])]
        if new_fields:
            self._fields = [*(self._fields or []), *new_fields]
            self._rewrite()
        else:
            try:
                with self.path.open("a", newline="") as file:
                    csv.DictWriter(file, self._fields).writerow(row)
            except OSError as exc:
                raise write_error(self.path, exc) from None

    def rows(self) -> list[dict]:
        return self._rows

    def last(self) -> dict:
        return {k: float(v) for k, v in self._rows[-1].items() if v != ""} if self._rows else {}

    def _rewrite(self) -> None:
        if self._fields is None:
            return
        with atomic_file(self.path) as temp, temp.open("w", newline="") as file:
            writer = csv.DictWriter(file, self._fields)
            writer.writeheader()
            writer.writerows(self._rows)


def plot_losses(rows: list[dict], path: Path) -> None:
    """Each loss column against the step, one line per term, on a log scale, as a PNG (matplotlib's Agg
    canvas: no display, and no pyplot state shared with anything else in the process)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(dict.fromkeys(k for r in rows for k in r if k not in ("step", "elapsed_s")))  # grown columns too
    figure = Figure(figsize=(9, 5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name in names:
        points = [(int(r["step"]), float(r[name])) for r in rows if r.get(name, "") != "" and float(r[name]) > 0]
        if points:
            steps, values = zip(*points, strict=True)
            axes.plot(steps, values, label=name, marker="o" if len(points) == 1 else None)
    if axes.lines:
        axes.set_yscale("log")
        axes.legend()
    axes.set_xlabel("step")
    axes.set_ylabel("loss (log scale)")
    axes.grid(True, which="both", alpha=0.3)
    with atomic_file(path) as temp:
        figure.savefig(temp, format="png")
