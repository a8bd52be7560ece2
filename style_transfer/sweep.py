"""A sweep over the settings that decide the look (sweep.py): the --grid text and its checks, one short train.py
run per combination (each in `DIR/runs/<name>/`, a subprocess of its own), what is kept between reruns, the
results table `DIR/sweep.csv` and the contact sheet `DIR/contact_sheet.jpg` (photos x settings).

A run is finished when its model file exists and its row is in sweep.csv (written atomically after every run);
a rerun skips finished runs and resumes an interrupted one from its last checkpoint. On Ctrl-C (or SIGTERM) the
running train.py is asked to stop once (it writes a checkpoint), and the sweep stops after it.
"""

import csv
import itertools
import math
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from style_transfer import image_io, model_files, previews, rendering
from utils import UserError, atomic_file, choose_precision

ROOT = Path(__file__).resolve().parent.parent
TRAIN_SCRIPT = ROOT / "train.py"
# The settings a grid may vary: train.py's flag (without the dashes) and the type of its values.
SETTINGS = {"style-weight": float, "content-weight": float, "tv-weight": float, "learning-rate": float,
            "style-size": int}
# train.py flags the sweep sets itself, per run.
OWN_FLAGS = ("--save-dir", "--savename", "--log-dir", "--checkpoint-dir", "--resume", "--resume-anyway")
MODEL_NAME = "model.pth"
LOSS_COLUMNS = ("content", "style", "tv", "total")
LINE = 12  # the height of a caption line under each cell of the contact sheet


def parse_grid(text: str) -> list[tuple[str, list[str]]]:
    """`style-weight=1e9,1e10 style-size=256,512` as [(setting, [value, ...]), ...], in the order given."""
    grid: list[tuple[str, list[str]]] = []
    for part in text.split():
        name, equals, values_text = part.partition("=")
        name = name.removeprefix("--")
        if not equals or not values_text:
            raise UserError(f"--grid: {part!r} is not SETTING=V1,V2,... (e.g. style-weight=1e9,1e10)")
        if name not in SETTINGS:
            raise UserError(f"--grid: unknown setting {name!r} (the grid varies {', '.join(SETTINGS)})")
        if name in (n for n, _ in grid):
            raise UserError(f"--grid: {name} is given twice")
        values = values_text.split(",")
        for value in values:
            _check_value(name, value)
        if len(set(values)) != len(values):
            raise UserError(f"--grid: {name} repeats a value: {values_text}")
        grid.append((name, values))
    if not grid:
        raise UserError("--grid: no settings (e.g. --grid \"style-weight=1e9,1e10 style-size=256,512\")")
    return grid


def _check_value(name: str, value: str) -> None:
    kind = SETTINGS[name]
    try:
        number = kind(value)
    except ValueError:
        raise UserError(f"--grid: {name}: {value!r} is not {'an integer' if kind is int else 'a number'}") from None
    positive = name in ("style-size", "learning-rate")
    if not math.isfinite(number) or number < 0 or (number == 0 and positive):
        raise UserError(f"--grid: {name}: {value} must be finite and {'> 0' if positive else '>= 0'}")


def combinations(grid: list[tuple[str, list[str]]]) -> list[dict[str, str]]:
    names = [name for name, _ in grid]
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(v for _, v in grid))]


def run_name(settings: dict[str, str]) -> str:
    """A folder name for one combination, e.g. style-weight=1e9_style-size=256."""
    return "_".join(f"{name}={re.sub(r'[^0-9A-Za-z.+-]', '_', value)}" for name, value in settings.items())


def label(settings: dict[str, str]) -> str:
    return " ".join(f"{name}={value}" for name, value in settings.items())


def check_train_flags(train_flags: Sequence[str], grid: list[tuple[str, list[str]]]) -> None:
    """Refuse flags the sweep sets itself, or that the grid varies."""
    for flag in train_flags:
        name = flag.split("=", 1)[0]
        if name in OWN_FLAGS:
            raise UserError(f"{name}: the sweep sets it for each run (under --out-dir)")
        if name.removeprefix("--") in dict(grid) or (name == "--lr" and "learning-rate" in dict(grid)):
            raise UserError(f"{name}: the grid varies it; leave it out or fix it in the grid to one value")


def settings_flags(settings: dict[str, str]) -> list[str]:
    return [item for name, value in settings.items() for item in (f"--{name}", value)]


def run_flags(train_flags: Sequence[str], settings: dict[str, str], run_dir: Path) -> list[str]:
    """train.py's flags for one run of the sweep."""
    return [*train_flags, *settings_flags(settings), "--save-dir", str(run_dir), "--savename", MODEL_NAME,
            "--log-dir", str(run_dir / "logs"), "--checkpoint-dir", str(run_dir / "checkpoints")]


def full_command(train_flags: Sequence[str], settings: dict[str, str]) -> str:
    """The train.py command that trains this combination fully: the sweep's flags without --max-steps."""
    kept, skip = [], False
    for flag in train_flags:
        if skip:
            skip = False
        elif flag == "--max-steps":
            skip = True
        elif not flag.startswith("--max-steps="):
            kept.append(flag)
    return shlex.join(["python", "train.py", *kept, *settings_flags(settings)])


def read_rows(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    with path.open(newline="") as file:
        return {row["run"]: row for row in csv.DictReader(file)}


def write_rows(rows: dict[str, dict], grid: list[tuple[str, list[str]]], path: Path) -> None:
    fields = ["run", *(n for n, _ in grid), "steps", *LOSS_COLUMNS, "time_s", "full_command"]
    with atomic_file(path) as temp, temp.open("w", newline="") as file:
        writer = csv.DictWriter(file, fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows.values())


def result_row(name: str, settings: dict[str, str], model_path: Path, train_flags: Sequence[str]) -> dict:
    provenance = model_files.read_provenance(model_path) or {}
    losses = provenance.get("final_losses", {})
    return {"run": name, **settings, "steps": provenance.get("steps", ""),
            **{k: f"{losses[k]:.6g}" if k in losses else "" for k in LOSS_COLUMNS},
            "time_s": provenance.get("wall_time_s", ""), "full_command": full_command(train_flags, settings)}


def last_checkpoint(run_dir: Path) -> Path | None:
    checkpoints = sorted((run_dir / "checkpoints").glob(f"{Path(MODEL_NAME).stem}_step*.pth"))
    return checkpoints[-1] if checkpoints else None


def train_one(flags: list[str], log_path: Path) -> None:
    """train.py with `flags` in a process (and session) of its own, its output to `log_path`. On Ctrl-C/SIGTERM
    here, it is asked once to stop (it writes a checkpoint) and waited for; then the interruption goes on."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as log:  # a resumed run's output after the interrupted one's
        process = subprocess.Popen([sys.executable, str(TRAIN_SCRIPT), *flags], stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            status = process.wait()
        except KeyboardInterrupt:
            process.send_signal(signal.SIGINT)
            try:
                process.wait()
            except KeyboardInterrupt:  # a second Ctrl-C: abort it too
                process.send_signal(signal.SIGINT)
                process.wait()
            raise
    if status != 0:
        errors = [line for line in log_path.read_text(errors="replace").splitlines() if line.startswith("error:")]
        reason = errors[-1].removeprefix("error: ") if errors else f"exit status {status}"
        raise UserError(f"train.py failed: {reason} (its output: {log_path})")


def contact_sheet(runs: list[tuple[str, Path]], photos: list[tuple[str, torch.Tensor]], device: torch.device,
                  path: Path) -> None:
    """One row per run (its label under every cell), one column per photo (and style, for conditional models):
    each run's model rendered through the usual path (rendering.stylize)."""
    precision = choose_precision("auto", device)
    rows = []
    for text, model_path in runs:
        model = rendering.prepare_for_rendering(model_files.load_transformer(model_path, device), precision)
        labels, pictures = previews.stylise_columns(model, photos, device, precision)
        cells = [_captioned(image_io.tensor_to_image(p), [*text.split(" "), column])
                 for p, column in zip(pictures, labels, strict=True)]
        rows.append(np.concatenate([np.asarray(c) for c in cells], axis=1))
    width = max(r.shape[1] for r in rows)
    sheet = np.full((sum(r.shape[0] for r in rows), width, 3), 255, np.uint8)
    y = 0
    for r in rows:
        sheet[y:y + r.shape[0], :r.shape[1]] = r
        y += r.shape[0]
    image_io.save_image(Image.fromarray(sheet), path)


def _captioned(image: Image.Image, lines: list[str]) -> Image.Image:
    """`image` with `lines` (its settings, then the photo) under it, one a line."""
    cell = Image.new("RGB", (image.width, image.height + LINE * len(lines) + 4), "white")
    cell.paste(image, (0, 0))
    draw = ImageDraw.Draw(cell)
    for index, line in enumerate(lines):
        draw.text((4, image.height + 2 + LINE * index), line, fill="black")
    return cell
