"""Regenerate every figure of the README and docs/ from the bundled models, images and demo clip.

    python tools/make_figures.py            # writes images/figures/*.jpg
    python tools/make_figures.py --interpolation-model other.pth   # the strip from another conditional model

The gallery and the interpolation strip come from the one conditional model models/all-styles.pth (each
style on its own, and the first two mixed at render time); the methods figure sets it beside the models of
fixed styles; the any-style figure shows the bundled photos in pictures models/any-style.pth never saw (the two
bundled style images and four of tools/make_style_set.py drawn with another seed than its training set). The
models were trained with the offline loss network, not VGG16: see models/README.md.
"""

import itertools
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent  # the repository root
sys.path.insert(0, str(ROOT))  # the suite's modules live at the top level

from make_style_images import save_image
from make_style_set import style_picture

import utils
from benchmarks import stand_in
from style_transfer import (
    image_io,
    model_files,
    optical_flow,
    rendering,
    stroke_scale,
    temporal_blend,
    video_io,
    warping_error,
)
from style_transfer.arbitrary_net import check_loss_network, predict, to_conditional
from style_transfer.loss_network import load_loss_network

CONTENT = ROOT / "images/content-images"
STYLES = ROOT / "images/style-images"
MODELS = ROOT / "models"
ALL_STYLES = MODELS / "all-styles.pth"
ANY_STYLE = MODELS / "any-style.pth"
UNSEEN_SEED = 1  # any-style.pth's training set is make_style_set.py's seed 0
UNSEEN = (0, 1, 3, 4)  # pictures of that seed: panes, strokes, dots, bands
CLIP = ROOT / "images/demo-clip.mp4"
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


def interpolation_strip(photo: Path, conditional_model: Path) -> Image.Image:
    """`photo` over the weights of a conditional model's first two styles, mixed at render time."""
    count = style_count(conditional_model)
    return row([tile(render(conditional_model, photo, [w, 1 - w] + [0.0] * (count - 2)), f"{w:.2f} : {1 - w:.2f}")
                for w in INTERPOLATION_WEIGHTS])


def flicker_row(model: torch.nn.Module, name: str, frames: list[np.ndarray], blending: list, measured: list
                ) -> Image.Image:
    """The last of `frames` stylised frame by frame and with --temporal's blending (the Motions `blending`),
    each beside its change from the frame before that the motion does not explain, as the warping error
    measures it (the Motions `measured`; occluded pixels black)."""
    batch = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float()
    per_frame = rendering.stylize(model, batch)
    blended = temporal_blend.TemporalBlender()(per_frame, blending)
    tiles = [tile(Image.fromarray(frames[-1]), "demo clip")]
    for label, video in (("frame by frame", per_frame), ("--temporal", blended)):
        video = video.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
        metric = warping_error.warping_error_of(video, measured)
        warped = optical_flow.warp(video[-2].astype(np.float32), measured[-1].backward)
        change = np.abs(video[-1] - warped).mean(axis=-1)
        change[measured[-1].occluded] = 0
        tiles.append(tile(Image.fromarray(video[-1]), f"{name}, {label}"))
        tiles.append(tile(Image.fromarray(np.clip(4 * change, 0, 255).astype(np.uint8)),
                          f"change x4 (warping error {metric.value:.2f})"))
    return row(tiles)


def flicker_figure() -> Image.Image:
    """12 frames into the demo clip's zoom: a bundled model, and a network that flickers."""
    reader = video_io.FrameReader(CLIP, (240, 160))
    try:
        frames = list(itertools.islice(reader, 30, 42))
    finally:
        reader.close()
    motions = {}
    blending = optical_flow.FlowEstimator(*temporal_blend.RENDER_FLOW, max_side=temporal_blend.RENDER_FLOW_SIDE)
    measuring = optical_flow.FlowEstimator("dis", "medium")
    for use, flow in (("blending", blending), ("measured", measuring)):  # as render_video.py, evaluate_video.py
        motions[use] = optical_flow.motions_of(frames, flow)
    strokes = model_files.load_transformer(MODELS / "brush-strokes.pth")
    return column([flicker_row(strokes, "brush-strokes.pth", frames, **motions),
                   flicker_row(stand_in.flickering_network(), "a flickering network", frames, **motions)])


STROKE_SCALES = (1, 2, 4)
STROKE_PHOTO_ZOOM = 2  # the photo enlarged first, as a higher-resolution photo of the same view


def stroke_scale_figure(photo: Path, model_path: Path) -> Image.Image:
    """The photo (enlarged) rendered at each --stroke-scale: whole above, a 1:1 crop of the middle below."""
    image = image_io.load_rgb(photo)
    image = image.resize((image.width * STROKE_PHOTO_ZOOM, image.height * STROKE_PHOTO_ZOOM), Image.Resampling.LANCZOS)
    content = image_io.image_to_tensor(image).unsqueeze(0)
    model = model_files.load_transformer(model_path)

    def stylise(batch: torch.Tensor) -> torch.Tensor:
        return rendering.stylize(model, batch)

    results = [("photo", image)] + [
        (f"--stroke-scale {s}", image_io.tensor_to_image(
            (stylise(content) if s == 1 else stroke_scale.stylise_with_stroke_scale(content, s, stylise))[0]))
        for s in STROKE_SCALES]
    left, top = (image.width - TILE) // 2, (image.height - TILE) // 2
    crops = [tile(r.crop((left, top, left + TILE, top + TILE)), f"{c}, 1:1 crop") for c, r in results]
    return column([row([tile(r, f"{c} ({r.width}x{r.height})") for c, r in results]), row(crops)])


def any_style_figure(model_path: Path = ANY_STYLE) -> Image.Image:
    """The bundled photos (at TILE pixels high) in six pictures the arbitrary-style model never saw."""
    model = model_files.load_transformer(model_path, arbitrary=True)
    with tempfile.TemporaryDirectory() as folder:
        pictures = [STYLES / "stained-glass.png", STYLES / "brush-strokes.jpg"]
        for index in UNSEEN:
            pictures.append(Path(folder) / f"unseen-{index}.png")
            save_image(style_picture(192, UNSEEN_SEED, index), pictures[-1])
        images = [image_io.load_rgb(p) for p in pictures]
    loss_network = load_loss_network(model.loss_network)
    check_loss_network(model, loss_network, model.loss_network, str(model_path))
    network = to_conditional(model, predict(model, loss_network, images), [p.stem for p in pictures])
    blank = Image.new("RGB", (TILE, TILE), "white")
    named = zip(images, pictures, strict=True)
    rows = [row([tile(blank, "style pictures:")] + [tile(image, path.name) for image, path in named])]
    for photo in sorted(CONTENT.glob("*.jpg")):
        content = image_io.load_rgb(photo, TILE)
        tiles = [tile(content, photo.name)]
        for index, path in enumerate(pictures):
            network.set_style_mix([float(i == index) for i in range(len(pictures))])
            batch = image_io.image_to_tensor(content).unsqueeze(0)
            tiles.append(tile(image_io.tensor_to_image(rendering.stylize(network, batch)[0]),
                              f"--style-image {path.name}"))
        rows.append(row(tiles))
    return column(rows)


def save(figure: Image.Image, path: Path) -> None:
    with utils.atomic_path(path) as temp:
        figure.save(temp, format="JPEG", quality=88)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> None:
    parser = utils.ArgumentParser(description=__doc__)
    parser.add_argument("--output-dir", default=str(ROOT / "images/figures"),
                        help="where the figures go (default: this repository's images/figures)")
    parser.add_argument("--interpolation-model", default=str(ALL_STYLES), metavar="PATH",
                        help="draw the interpolation strip from this conditional model's first two styles, mixed "
                             "at render time (default: models/all-styles.pth)")
    args = parser.parse_args(argv)
    out = Path(args.output_dir)
    interpolation_model = utils.require_file(args.interpolation_model, "--interpolation-model")
    style_count(interpolation_model)  # before anything is drawn
    photos = sorted(CONTENT.glob("*.jpg"))
    if not photos:
        raise utils.UserError(f"no bundled photos in {CONTENT}")

    # content | style | result, for each photo and each style of the conditional model
    styles = [(STYLES / "stained-glass.png", [1.0, 0.0], "stained-glass"),
              (STYLES / "brush-strokes.jpg", [0.0, 1.0], "brush-strokes")]
    rows = []
    for photo in photos:
        for style, mix, name in styles:
            rows.append(row([tile(image_io.load_rgb(photo), photo.name), tile(image_io.load_rgb(style), style.name),
                             tile(render(ALL_STYLES, photo, mix), f"all-styles.pth --style {name}")]))
    save(column(rows), out / "gallery.jpg")

    # the two styles and their 0.5/0.5 blend by each method
    coffee = CONTENT / "coffee.jpg"
    fixed = [("stained-glass.pth", "stained glass only"), ("brush-strokes.pth", "brush strokes only"),
             ("blend.pth", "blend, train.py 0.5/0.5"), ("distilled.pth", "blend, distillation.py")]
    save(row([tile(image_io.load_rgb(coffee), "content")] + [tile(render(MODELS / m, coffee), c) for m, c in fixed]
             + [tile(render(ALL_STYLES, coffee, [0.5, 0.5]), "all-styles.pth --style-mix 0.5,0.5")]),
         out / "methods.jpg")

    # interpolation over the style weights (stained glass : brush strokes)
    save(interpolation_strip(CONTENT / "chelsea.jpg", interpolation_model), out / "interpolation.jpg")

    # flicker on the demo clip, frame by frame and with render_video.py --temporal
    save(flicker_figure(), out / "temporal.jpg")

    # brush size at render time: render_image.py --stroke-scale 1, 2, 4
    save(stroke_scale_figure(CONTENT / "chelsea.jpg", MODELS / "brush-strokes.pth"), out / "stroke-scale.jpg")
    # the arbitrary-style model in pictures it never saw
    save(any_style_figure(), out / "any-style.jpg")


if __name__ == "__main__":
    utils.run_main(main)
