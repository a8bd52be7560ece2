"""Cut a small training set for the demo models out of the bundled content photos.

The demo models cannot be trained on COCO here, so they learn from many crops of our own photos:
every photo at three scales, on a 3x3 grid of positions, plain and mirrored.

    python tools/make_demo_data.py --output data/demo-crops
"""

import sys
from pathlib import Path

from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent  # the repository root
sys.path.insert(0, str(ROOT))  # the suite's modules live at the top level

import utils
from style_transfer import image_io

SCALES = (1.0, 0.7, 0.5)  # crop side as a fraction of the photo's shorter side
POSITIONS = (0.0, 0.5, 1.0)  # where the crop sits along each free axis


def crops(image: Image.Image, size: int) -> list[Image.Image]:
    short = min(image.size)
    result = []
    for scale in SCALES:
        side = round(short * scale)
        corners = {(round(fx * (image.width - side)), round(fy * (image.height - side)))
                   for fx in POSITIONS for fy in POSITIONS}
        for left, top in sorted(corners):
            crop = image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
            result += [crop, ImageOps.mirror(crop)]
    return result


def main(argv: list[str] | None = None) -> None:
    parser = utils.ArgumentParser(description=__doc__)
    parser.add_argument("--input", default="images/content-images", help="folder of photos (default: %(default)s)")
    parser.add_argument("--output", default="data/demo-crops", help="folder for the crops (default: %(default)s)")
    parser.add_argument("--size", type=utils.positive_int, default=256,
                        help="crop side in pixels (default: %(default)s)")
    args = parser.parse_args(argv)
    photos = image_io.list_images(args.input)
    if not photos:
        raise utils.UserError(f"--input: no image in {args.input}")
    output = Path(args.output)
    count = 0
    for photo in photos:
        for i, crop in enumerate(crops(image_io.load_rgb(photo), args.size)):
            with utils.atomic_path(output / f"{photo.stem}_{i:03d}.jpg") as temp:
                crop.save(temp, format="JPEG", quality=92)
            count += 1
    print(f"{count} crops of {len(photos)} photos written to {output}")


if __name__ == "__main__":
    utils.run_main(main)
