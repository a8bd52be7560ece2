"""How one training run compares with another's final losses, from their train.py CSV logs.

    python benchmarks/first_reached.py benchmarks/add-style-stained-glass.csv benchmarks/dedicated-stained-glass.csv \
        --at-step 180

Each logged row is the mean of the steps since the one before (--log-interval). Prints the first run's row at
--at-step (its style and total loss as multiples of the second run's last row), then the first rows of the first run
whose style loss, and whose total loss, are at most the second run's last, with their step and time as shares of the
second run's. A run trained with a constant learning rate passes through the same rows whatever its --max-steps, so
one long run gives both its standing at 20% of the steps and where it gets there.
"""

import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository root
sys.path.insert(0, str(ROOT))  # the suite's modules live at the top level

import utils


def rows_of(path: Path) -> list[dict[str, float]]:
    with open(path, newline="") as file:
        rows = [{key: float(value) for key, value in row.items() if value not in ("", None)}
                for row in csv.DictReader(file)]
    if not rows:
        raise utils.UserError(f"{path}: no logged steps")
    return rows


def first_at_most(rows: list[dict[str, float]], key: str, goal: float) -> dict[str, float] | None:
    """The first row whose `key` is at most `goal`, or None."""
    return next((row for row in rows if row[key] <= goal), None)


def report(fast: list[dict[str, float]], reference: list[dict[str, float]], at_step: int | None) -> list[str]:
    """The lines main() prints, for logs already read (fast: the run that should get there first)."""
    goal, steps, seconds = reference[-1], reference[-1]["step"], reference[-1]["elapsed_s"]
    lines = [f"the reference's last row: style loss {goal['style']:.1f}, total {goal['total']:.1f}, "
             f"after {steps:.0f} steps, {seconds:.0f} s"]
    if at_step is not None:
        row = next((r for r in fast if r["step"] == at_step), None)
        if row is None:
            raise utils.UserError(f"--at-step {at_step}: the first log has no row for that step")
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
    parser.add_argument("--at-step", type=int, default=None,
                        help="also print the first run's row at this step (default: none)")
    args = parser.parse_args(argv)
    fast, reference = rows_of(utils.require_file(args.fast, "log")), rows_of(utils.require_file(args.reference, "log"))
    lines = report(fast, reference, args.at_step)
    print("\n".join([f"first run: {args.fast}", f"reference: {args.reference}", *lines]))


if __name__ == "__main__":
    utils.run_main(main)
