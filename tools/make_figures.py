"""Regenerate every figure in the README from the bundled models and images.

    python tools/make_figures.py            # writes images/figures/*.jpg

The models were trained with the untrained (random) loss network, see models/README.md.
"""

import sys
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent  # the repository root
sys.path.insert(0, str(ROOT))  # the suite's modules live at the top level

import image_io
import model_files
import rendering
import utils

CONTENT = ROOT / "images/content-images"
STYLES = ROOT / "images/style-images"
MODELS = ROOT / "models"
TILE = 256  # height of every picture in a figure
LABEL = 22  # height of the caption strip under each picture


def tile(image: Image.Image, caption: str) -> Image.Image:
    image = image.convert("RGB")
    image = image.resize((round(image.width * TILE / image.height), TILE), Image.Resampling.LANCZOS)
    framed = Image.new("RGB", (image.width, TILE + LABEL), "white")
    framed.paste(image, (0, 0))
    ImageDraw.Draw(framed).text((6, TILE + 5), caption, fill="black")
    return framed


def row(tiles: list[Image.Image], gap: int = 6) -> Image.Image:
    width = sum(t.width for t in tiles) + gap * (len(tiles) - 1)
    strip = Image.new("RGB", (width, max(t.height for t in tiles)), "white")
    x = 0
    for t in tiles:
        strip.paste(t, (x, 0))
        x += t.width + gap
    return strip


def column(rows: list[Image.Image], gap: int = 6) -> Image.Image:
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows) + gap * (len(rows) - 1)),
                      "white")
    y = 0
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.height + gap
    return sheet


def render(model_path: Path, photo: Path) -> Image.Image:
    model = model_files.load_transformer(model_path)
    content = image_io.image_to_tensor(image_io.load_rgb(photo)).unsqueeze(0)
    return image_io.tensor_to_image(rendering.stylize(model, content)[0])


def save(figure: Image.Image, path: Path) -> None:
    with utils.atomic_path(path) as temp:
        figure.save(temp, format="JPEG", quality=88)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> None:
    parser = utils.ArgumentParser(description=__doc__)
    parser.add_argument("--output-dir", default=str(ROOT / "images/figures"),
                        help="where the figures go (default: this repository's images/figures)")
    args = parser.parse_args(argv)
    out = Path(args.output_dir)
    glass, strokes = STYLES / "stained-glass.png", STYLES / "brush-strokes.jpg"
    photos = sorted(CONTENT.glob("*.jpg"))
    if not photos:
        raise utils.UserError(f"no bundled photos in {CONTENT}")

    # content | style | result, for each photo and each single-style model
    rows = []
    for photo in photos:
        for style, model in [(glass, "stained-glass.pth"), (strokes, "brush-strokes.pth")]:
            rows.append(row([tile(image_io.load_rgb(photo), photo.name), tile(image_io.load_rgb(style), style.name),
                             tile(render(MODELS / model, photo), f"models/{model}")]))
    save(column(rows), out / "gallery.jpg")

    # the two styles and their blend by both methods
    coffee = CONTENT / "coffee.jpg"
    methods = [("stained-glass.pth", "stained glass only"), ("brush-strokes.pth", "brush strokes only"),
               ("blend.pth", "blend, train.py 0.5/0.5"), ("distilled.pth", "blend, distillation.py")]
    save(row([tile(image_io.load_rgb(coffee), "content")] + [tile(render(MODELS / m, coffee), c) for m, c in methods]),
         out / "methods.jpg")

    # interpolation over the style weights (stained glass : brush strokes)
    strip = [("stained-glass.pth", "1.00 : 0.00"), ("interpolation/blend-0.75.pth", "0.75 : 0.25"),
             ("blend.pth", "0.50 : 0.50"), ("interpolation/blend-0.25.pth", "0.25 : 0.75"),
             ("brush-strokes.pth", "0.00 : 1.00")]
    chelsea = CONTENT / "chelsea.jpg"
    save(row([tile(render(MODELS / m, chelsea), c) for m, c in strip]), out / "interpolation.jpg")


if __name__ == "__main__":
    utils.run_main(main)
