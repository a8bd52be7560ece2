"""How one training run compares with another's final losses, from their train.py CSV logs.

    python benchmarks/first_reached.py benchmarks/add-style-stained-glass.csv benchmarks/dedicated-stained-glass.csv \
        --at-step 180 --window 5

Each logged row is the mean of the steps since the one before (--log-interval). The goal is the second run's final
style and total loss: the mean of its last --window rows (one row is a mean of few steps, and the lowest of a
noisy run's rows can fall at its end). Prints the first run's row at --at-step (its losses as multiples of the
goal), then its first rows whose style loss, and whose total loss, are at most the goal's, with their step and time
as shares of the second run's. A run trained with a constant learning rate passes through the same rows whatever
its --max-steps (benchmarks/add-style-stained-glass.csv's first 180 steps are those of the 180-step run it
replaced), so one long run gives both its standing at 20% of the steps and where it gets there.
"""

import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository root
sys.path.insert(0, str(ROOT))  # the suite's modules live at the top level

import utils

COLUMNS = ("step", "elapsed_s", "style", "total")  # what every row of train.py's CSV log has, among others


def rows_of(path: Path) -> list[dict[str, float]]:
    """The rows of a train.py CSV log, each column a float."""
    with open(path, newline="") as file:
        try:
            rows = [{key: float(value) for key, value in row.items() if value not in ("", None)}
                    for row in csv.DictReader(file)]
        except ValueError as error:  # a cell that is not a number
            raise utils.UserError(f"{path}: not a train.py log ({error})") from None
    if not rows:
        raise utils.UserError(f"{path}: no logged steps")
    missing = [key for key in COLUMNS if any(key not in row for row in rows)]
    if missing:
        raise utils.UserError(f"{path}: not a train.py log (rows without {', '.join(missing)})")
    return rows


def first_at_most(rows: list[dict[str, float]], key: str, goal: float) -> dict[str, float] | None:
    """The first row whose `key` is at most `goal`, or None."""
    return next((row for row in rows if row[key] <= goal), None)


def report(fast: list[dict[str, float]], reference: list[dict[str, float]], at_step: int | None,
           window: int = 1) -> list[str]:
    """The lines main() prints, for logs already read (fast: the run that should get there first)."""
    last = reference[-window:]
    goal = {key: sum(row[key] for row in last) / len(last) for key in ("style", "total")}
    steps, seconds = reference[-1]["step"], reference[-1]["elapsed_s"]
    first = reference[-len(last) - 1]["step"] + 1 if len(reference) > len(last) else 1
    lines = [f"the reference's last {len(last)} rows (steps {first:.0f} to {steps:.0f}, of {seconds:.0f} s in all), "
             f"their mean: style loss {goal['style']:.1f}, total {goal['total']:.1f}"]
    if at_step is not None:
        row = next((r for r in fast if r["step"] == at_step), None)
        if row is None:
            raise utils.UserError(f"--at-step {at_step}: the first log has no row for that step (its rows: steps "
                                  f"{fast[0]['step']:.0f} to {fast[-1]['step']:.0f})")
        lines.append(f"first run at step {at_step} ({at_step / steps:.1%} of the steps, {row['elapsed_s']:.0f} s = "
                     f"{row['elapsed_s'] / seconds:.1%} of the time): style loss {row['style']:.1f} = "
                     f"{row['style'] / goal['style']:.2f} x the reference's, total {row['total']:.1f} = "
                     f"{row['total'] / goal['total']:.2f} x")
    for key in ("style", "total"):
        reached = first_at_most(fast, key, goal[key])
        if reached is None:
            lines.append(f"{key} loss: not reached in its {fast[-1]['step']:.0f} steps ({fast[-1]['elapsed_s']:.0f} s);"
                         f" its last {fast[-1][key]:.1f} = {fast[-1][key] / goal[key]:.2f} x the reference's")
        else:
            lines.append(f"{key} loss: reached at step {reached['step']:.0f} ({reached['step'] / steps:.1%} of the "
                         f"steps), {reached['elapsed_s']:.0f} s ({reached['elapsed_s'] / seconds:.1%} of the time): "
                         f"{reached[key]:.1f}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = utils.ArgumentParser(description=__doc__)
    parser.add_argument("fast", help="the log of the run that should get there first (e.g. --add-style)")
    parser.add_argument("reference", help="the log of the run whose final losses are the goal (a dedicated model)")
    parser.add_argument("--at-step", type=int, default=None, metavar="STEP",
                        help="also print the first run's row at this logged step (default: none)")
    parser.add_argument("--window", type=int, default=1, metavar="ROWS",
                        help="the goal is the mean of the reference's last ROWS rows (default: 1, its last row)")
    args = parser.parse_args(argv)
    if args.window < 1:
        parser.error(f"--window must be at least 1, not {args.window}")
    fast, reference = rows_of(utils.require_file(args.fast, "log")), rows_of(utils.require_file(args.reference, "log"))
    lines = report(fast, reference, args.at_step, args.window)
    print("\n".join([f"first run: {args.fast}", f"reference: {args.reference}", *lines]))


if __name__ == "__main__":
    utils.run_main(main)
