"""Compare the settings that decide the look: one short train.py run per combination of a grid, a contact sheet
of their results on a few photos, and a table of their losses, times and the command to train each one fully.

    python sweep.py --grid "style-weight=1e9,1e10,3e10 style-size=256,512" --max-steps 2000 --out-dir sweep/ \\
        --datapath coco/ --stylepath my-style.jpg

Every other flag goes to train.py as it is (see python train.py --help). The grid may vary --style-weight,
--content-weight, --style-size, --tv-weight and --learning-rate. Writes DIR/runs/<name>/ (each run's model, logs
and checkpoints), DIR/sweep.csv (after every run) and DIR/contact_sheet.jpg (photos x settings). A rerun keeps
the finished runs and resumes an interrupted one; Ctrl-C stops the running train.py at a checkpoint.
"""

import argparse
from pathlib import Path

from tqdm import tqdm

import train
import utils
from style_transfer import previews, sweep


def build_parser() -> argparse.ArgumentParser:
    parser = utils.ArgumentParser(description=__doc__)
    parser.add_argument("--grid", required=True, metavar="TEXT",
                        help="the settings to vary and their values, e.g. \"style-weight=1e9,1e10 style-size=256,512\""
                             f" (settings: {', '.join(sweep.SETTINGS)}); one run per combination")
    parser.add_argument("--max-steps", type=utils.positive_int, required=True,
                        help="the length of each run, in optimiser steps (train.py --max-steps)")
    parser.add_argument("--out-dir", required=True, metavar="DIR",
                        help="folder for the runs, sweep.csv and contact_sheet.jpg (rerun with the same one to "
                             "continue)")
    parser.add_argument("--sheet-images", default=None, metavar="DIR",
                        help=f"the contact sheet's photos: the first {previews.MAX_PHOTOS} images in DIR (default: "
                             "--preview-images if given, else the bundled photos, images/content-images/)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                        help="where to train and render the contact sheet (train.py --device; default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args, train_flags = parser.parse_known_args(argv)
    grid = sweep.parse_grid(args.grid)
    sweep.check_train_flags(train_flags, grid)
    train_flags = [*train_flags, "--max-steps", str(args.max_steps), "--device", args.device]
    runs = sweep.combinations(grid)
    out_dir = Path(args.out_dir)
    train_parser = train.build_parser()  # every run's flags checked by train.py's own parser before anything is
    train_parser.prog = "train.py"        # written; its refusal names the script whose flag it is
    for settings in runs:
        train_parser.parse_args(sweep.run_flags(train_flags, settings, out_dir / "runs" / "check"))
    sheet_folder = Path(args.sheet_images or _preview_images(train_flags) or previews.BUNDLED_PHOTOS)
    photos = previews.load_preview_photos(sheet_folder) if sheet_folder.is_dir() else []
    if not photos:
        raise utils.UserError(f"--sheet-images: no images in {sheet_folder}")
    csv_path = out_dir / "sweep.csv"
    rows = sweep.read_rows(csv_path)
    for settings in tqdm(runs, unit="run", dynamic_ncols=True, desc="sweep"):
        name = sweep.run_name(settings)
        run_dir = out_dir / "runs" / name
        if name in rows and (run_dir / sweep.MODEL_NAME).is_file():
            continue  # finished before
        flags = sweep.run_flags(train_flags, settings, run_dir)
        checkpoint = sweep.last_checkpoint(run_dir)
        if checkpoint is not None:
            flags += ["--resume", str(checkpoint)]
        sweep.train_one(flags, run_dir / "train.log")
        rows[name] = sweep.result_row(name, settings, run_dir / sweep.MODEL_NAME, train_flags)
        sweep.write_rows(rows, grid, csv_path)
    sheet = out_dir / "contact_sheet.jpg"
    sweep.contact_sheet([(sweep.label(s), out_dir / "runs" / sweep.run_name(s) / sweep.MODEL_NAME) for s in runs],
                        photos, utils.choose_device(args.device), sheet)
    print(f"wrote {csv_path} and {sheet} ({len(runs)} runs)")


def _preview_images(train_flags: list[str]) -> str | None:
    for index, flag in enumerate(train_flags):
        if flag == "--preview-images" and index + 1 < len(train_flags):
            return train_flags[index + 1]
        if flag.startswith("--preview-images="):
            return flag.split("=", 1)[1]
    return None


if __name__ == "__main__":
    utils.run_main(main)
