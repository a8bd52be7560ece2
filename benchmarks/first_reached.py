"""When one training run first reaches another's final style loss, from their train.py CSV logs.

    python benchmarks/first_reached.py benchmarks/add-style-stained-glass.csv benchmarks/dedicated-stained-glass.csv

Each logged row is the mean of the steps since the one before (--log-interval). Prints the first row of the first
log whose style loss is at most the last row of the second, with its step and time as shares of the second run's.
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


def main(argv: list[str] | None = None) -> None:
    parser = utils.ArgumentParser(description=__doc__)
    parser.add_argument("fast", help="the log of the run that should get there first (e.g. --add-style)")
    parser.add_argument("reference", help="the log of the run whose final style loss is the goal (a dedicated model)")
    args = parser.parse_args(argv)
    fast, reference = rows_of(utils.require_file(args.fast, "log")), rows_of(utils.require_file(args.reference, "log"))
    goal, steps, seconds = reference[-1]["style"], reference[-1]["step"], reference[-1]["elapsed_s"]
    print(f"{args.reference}: final style loss {goal:.1f} after {steps:.0f} steps, {seconds:.0f} s")
    reached = next((row for row in fast if row["style"] <= goal), None)
    if reached is None:
        print(f"{args.fast}: not reached in its {fast[-1]['step']:.0f} steps ({fast[-1]['elapsed_s']:.0f} s); "
              f"its final style loss {fast[-1]['style']:.1f} = {fast[-1]['style'] / goal:.2f} x the goal")
        return
    print(f"{args.fast}: reached at step {reached['step']:.0f} ({reached['step'] / steps:.1%} of the steps), "
          f"{reached['elapsed_s']:.0f} s ({reached['elapsed_s'] / seconds:.1%} of the time); style loss "
          f"{reached['style']:.1f}")


if __name__ == "__main__":
    utils.run_main(main)
