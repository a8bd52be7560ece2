"""Regenerate every figure in the README from the bundled models and images.

    python tools/make_figures.py            # writes images/figures/*.jpg
    python tools/make_figures.py --interpolation-model models/conditional.pth   # the strip from one model

The interpolation strip comes from five models trained with fixed weights (train.py --style-weights), or,
with --interpolation-model, from one conditional model (train.py --conditional) mixed at render time.

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


def render(model_path: Path, photo: Path, mix: list[float] | None = None) -> Image.Image:
    """`photo` stylised by the model; `mix`: the style weights of a conditional model."""
    model = model_files.load_transformer(model_path)
    if mix is not None:
        model.set_style_mix(mix)
    content = image_io.image_to_tensor(image_io.load_rgb(photo)).unsqueeze(0)
    return image_io.tensor_to_image(rendering.stylize(model, content)[0])


INTERPOLATION_WEIGHTS = (1.0, 0.75, 0.5, 0.25, 0.0)  # of the first style (stained glass); the second has the rest


def style_count(conditional_model: Path) -> int:
    """The number of styles of --interpolation-model, which must be two or more."""
    count = getattr(model_files.load_transformer(conditional_model), "style_count", 1)
    if count < 2:
        raise utils.UserError(f"--interpolation-model: {conditional_model} has {count} style; the strip needs a "
                              "conditional model of two styles or more (train.py --conditional)")
    return count


def interpolation_strip(photo: Path, conditional_model: Path | None = None) -> Image.Image:
    """`photo` over the weights of the two styles: one train.py model per weight, or one conditional model's
    first two styles mixed at render time."""
    if conditional_model is None:
        models = ["stained-glass.pth", "interpolation/blend-0.75.pth", "blend.pth", "interpolation/blend-0.25.pth",
                  "brush-strokes.pth"]
        return row([tile(render(MODELS / m, photo), f"{w:.2f} : {1 - w:.2f}")
                    for m, w in zip(models, INTERPOLATION_WEIGHTS, strict=True)])
    count = style_count(conditional_model)
    return row([tile(render(conditional_model, photo, [w, 1 - w] + [0.0] * (count - 2)), f"{w:.2f} : {1 - w:.2f}")
                for w in INTERPOLATION_WEIGHTS])


def save(figure: Image.Image, path: Path) -> None:
    with utils.atomic_path(path) as temp:
        figure.save(temp, format="JPEG", quality=88)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> None:
    parser = utils.ArgumentParser(description=__doc__)
    parser.add_argument("--output-dir", default=str(ROOT / "images/figures"),
                        help="where the figures go (default: this repository's images/figures)")
    parser.add_argument("--interpolation-model", default=None, metavar="PATH",
                        help="draw the interpolation strip from this conditional model's first two styles, mixed "
                             "at render time (default: from the five train.py models of fixed weights)")
    args = parser.parse_args(argv)
    out = Path(args.output_dir)
    interpolation_model = Path(args.interpolation_model) if args.interpolation_model else None
    if interpolation_model:
        style_count(interpolation_model)  # before anything is drawn
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
    save(interpolation_strip(CONTENT / "chelsea.jpg", interpolation_model), out / "interpolation.jpg")


if __name__ == "__main__":
    utils.run_main(main)
