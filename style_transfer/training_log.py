"""The training log: loss rows in a CSV file, and their plot as a PNG (no plotting library)."""

import csv
import math
from pathlib import Path

from PIL import Image, ImageDraw

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


def plot_losses(rows: list[dict], path: Path, width: int = 900, height: int = 500) -> None:
    """Draw each loss column against the step on a log scale, as a PNG (no plotting library)."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = 70, 20, width - 20, height - 40
    draw.rectangle((left, top, right, bottom), outline="black")
    names = list(dict.fromkeys(k for r in rows for k in r if k not in ("step", "elapsed_s")))  # grown columns too
    points = {n: [(int(r["step"]), float(r[n])) for r in rows if r.get(n, "") != "" and float(r[n]) > 0]
              for n in names}
    values = [math.log10(v) for series in points.values() for _, v in series]
    if values:
        steps = [s for series in points.values() for s, _ in series]
        lo, hi = min(values), max(values) + 1e-9
        first, last = min(steps), max(steps) + 1e-9
        for i, name in enumerate(names):
            xy = [(left + (s - first) / (last - first) * (right - left),
                   bottom - (math.log10(v) - lo) / (hi - lo) * (bottom - top)) for s, v in points[name]]
            colour = PLOT_COLOURS[i % len(PLOT_COLOURS)]
            if len(xy) > 1:
                draw.line(xy, fill=colour, width=2)
            elif xy:
                draw.ellipse((xy[0][0] - 3, xy[0][1] - 3, xy[0][0] + 3, xy[0][1] + 3), fill=colour)
            draw.text((right - 150, top + 10 + 15 * i), name, fill=colour)
        draw.text((5, top), f"{10 ** hi:.3g}", fill="black")
        draw.text((5, bottom - 10), f"{10 ** lo:.3g}", fill="black")
        draw.text((left, bottom + 8), f"step {first:.0f}", fill="black")
        draw.text((right - 80, bottom + 8), f"step {last:.0f}", fill="black")
    draw.text((width // 2 - 60, height - 20), "loss (log scale)", fill="black")
    with atomic_file(path) as temp:
        image.save(temp, format="PNG")


PLOT_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]

