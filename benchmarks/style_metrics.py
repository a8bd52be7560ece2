"""How much of its style image a model's results carry: colour, texture, and how much of the photo they keep.

    python benchmarks/style_metrics.py --models models/stained-glass.pth,models/brush-strokes.pth

Every photo in --photos is rendered by render_image.py with every model at --max-size 512 (PNG, so nothing is
lost), and each result is compared with its model's style image (read from the model's provenance, or
--styles) and with the photo, resized the same way. A conditional model is measured in each of its styles
(render_image.py --style I against style I's image):

    python benchmarks/style_metrics.py --models models/all-styles.pth

Per result, and their means:

- colour, sliced Wasserstein ratio: the sliced Wasserstein distance (W1, 256 seeded directions, 512
  quantiles) between the RGB pixel distributions of the result and of the style image, divided by the same
  distance from the photo itself to the style image. 1 = no closer to the style's colours than the photo;
  0 = the style's colour distribution exactly.
- colour, histogram intersection: sum over 6x6x6 RGB bins of the smaller of the two shares (1 = the same
  palette in the same proportions), for the result and, as a reference, for the photo.
- texture ratio: the Gram distance, in slots 1-3 of an offline loss network drawn from another seed
  (TEXTURE_SEED, not the training network's), from result to style, divided by that from photo to style.
  Relative Frobenius distance ||G(a) - G(style)|| / ||G(style)||, averaged over the three slots.
- edge correlation: Pearson correlation of the luminance gradient magnitudes (Sobel) of result and photo,
  1 = the photo's edges exactly. It shows that the photo's content is kept.
"""

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent  # the repository root
sys.path.insert(0, str(ROOT))  # the suite's modules live at the top level

import render_image
import utils
from style_transfer import image_io, loss_network, model_files
from vgg import gram_matrix

DIRECTIONS, QUANTILES, SWD_SEED = 256, 512, 0
BINS = 6
TEXTURE_SEED = 1  # the training network is drawn from loss_network.SEED (0)
_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def pixels(image: Image.Image) -> torch.Tensor:
    """An image's RGB pixels as an N x 3 float64 tensor in 0-1."""
    return torch.from_numpy(np.asarray(image.convert("RGB"), np.float64).reshape(-1, 3) / 255)


def projected_quantiles(points: torch.Tensor) -> torch.Tensor:
    """QUANTILES quantiles of the points' projections on DIRECTIONS seeded unit directions (a row each)."""
    generator = torch.Generator().manual_seed(SWD_SEED)
    directions = torch.randn(DIRECTIONS, 3, generator=generator, dtype=torch.float64)
    directions /= directions.norm(dim=1, keepdim=True)
    positions = ((torch.arange(QUANTILES, dtype=torch.float64) + 0.5) / QUANTILES * len(points)).long()
    # 16 directions at a time: all 256 projections of a 512x512 image would take half a gigabyte.
    return torch.cat([(chunk @ points.T).sort(dim=1).values[:, positions] for chunk in directions.split(16)])


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor) -> float:
    """The mean over the directions of the W1 distance between two images' projected colour distributions,
    from their projected_quantiles."""
    return (a - b).abs().mean().item()


def histogram(points: torch.Tensor) -> torch.Tensor:
    index = (points * 255).round().long() * BINS // 256
    flat = (index[:, 0] * BINS + index[:, 1]) * BINS + index[:, 2]
    counts = torch.bincount(flat, minlength=BINS**3).double()
    return counts / counts.sum()


def histogram_intersection(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.minimum(histogram(a), histogram(b)).sum().item()


def texture_distance(network: torch.nn.Module, image: Image.Image, style_grams: list[torch.Tensor]) -> float:
    grams = grams_of(network, image)
    return float(np.mean([((g - s).norm() / s.norm()).item() for g, s in zip(grams, style_grams, strict=True)]))


def grams_of(network: torch.nn.Module, image: Image.Image) -> list[torch.Tensor]:
    """Gram matrices of the three slots after the colour slot (texture and edges, not the palette itself)."""
    with torch.no_grad():
        features = network(image_io.image_to_tensor(image).unsqueeze(0))
    return [gram_matrix(f)[0] for f in features[1:]]


def edge_correlation(a: Image.Image, b: Image.Image) -> float:
    def gradient_magnitude(image: Image.Image) -> torch.Tensor:
        luminance = torch.from_numpy(np.asarray(image.convert("L"), np.float32)).view(1, 1, *image.size[::-1])
        kernels = torch.stack([_SOBEL, _SOBEL.T]).unsqueeze(1)
        return F.conv2d(luminance, kernels).pow(2).sum(dim=1).sqrt().flatten().double()

    x, y = gradient_magnitude(a), gradient_magnitude(b)
    return torch.corrcoef(torch.stack([x, y]))[0, 1].item()


def styles_of(model: Path) -> list[tuple[int | None, Path]]:
    """What to measure a model in, from its provenance: (None, its style image) for a single-style model;
    (I, style I's image) for each style of a conditional model, rendered with --style I."""
    provenance_file = model_files.provenance_path(model)
    if not provenance_file.is_file():
        raise utils.UserError(f"--models: {model} has no provenance ({provenance_file}); name its style with --styles")
    provenance = json.loads(provenance_file.read_text())
    if provenance.get("conditional"):
        if not provenance.get("styles"):  # distillation.py --conditional names teachers, not style images
            raise utils.UserError(f"--models: {model}'s provenance names no style images (a distilled model?); "
                                  "measure its teachers instead")
        styles = [(index, s["path"]) for index, s in enumerate(provenance["styles"])]
    else:
        styles = [(None, s["path"]) for s in provenance.get("styles", []) if s.get("weight")]
        if len(styles) != 1:
            raise utils.UserError(f"--models: {model} was not trained on exactly one style; name it with --styles")
    return [(index, Path(path) if Path(path).is_absolute() else ROOT / path) for index, path in styles]


def measure(subjects: list[tuple[Path, int | None, Path]], photos: list[Path], max_size: int, style_size: int,
            device: str, precision: str, output_dir: Path) -> list[dict]:
    """One row per photo and subject: (model, its --style index or None, the style image to compare with)."""
    texture_network = loss_network.OfflineLossNetwork(seed=TEXTURE_SEED)
    photo_figures: dict[tuple[Path, tuple[int, int]], tuple] = {}  # the same photo at the same size: once
    rows = []
    for model, style_index, style_path in subjects:
        choice = [] if style_index is None else ["--style", str(style_index)]
        rendered = output_dir / (model.stem if style_index is None else f"{model.stem}-style{style_index}")
        render_image.main(["--content-path", str(photos[0].parent), "--model-path", str(model), "--output-path",
                           str(rendered), "--format", "png", "--max-size", str(max_size), "--device", device,
                           "--precision", precision, *choice])
        style = image_io.load_rgb(style_path, style_size)
        style_pixels, style_grams = pixels(style), grams_of(texture_network, style)
        style_quantiles = projected_quantiles(style_pixels)
        for photo_path in photos:
            result = image_io.load_rgb(rendered / f"{photo_path.stem}.png")
            if (photo_path, result.size) not in photo_figures:
                photo = image_io.load_rgb(photo_path).resize(result.size, Image.Resampling.LANCZOS)
                photo_figures[photo_path, result.size] = photo, pixels(photo), projected_quantiles(pixels(photo))
            photo, photo_pixels, photo_quantiles = photo_figures[photo_path, result.size]
            result_pixels = pixels(result)
            rows.append({
                "photo": photo_path.name, "style": style_path.name, "model": str(model), "style_index": style_index,
                "swd_ratio": sliced_wasserstein(projected_quantiles(result_pixels), style_quantiles)
                / sliced_wasserstein(photo_quantiles, style_quantiles),
                "hist_result": histogram_intersection(result_pixels, style_pixels),
                "hist_photo": histogram_intersection(photo_pixels, style_pixels),
                "texture_ratio": texture_distance(texture_network, result, style_grams)
                / texture_distance(texture_network, photo, style_grams),
                "edge_correlation": edge_correlation(result, photo),
            })
    return rows


COLUMNS = [("swd_ratio", "SW ratio"), ("hist_result", "hist. result"), ("hist_photo", "hist. photo"),
           ("texture_ratio", "texture ratio"), ("edge_correlation", "edge corr.")]


def table(rows: list[dict]) -> str:
    """A Markdown table: a row per result, and each model's means."""
    lines = ["| model | photo | style | " + " | ".join(title for _, title in COLUMNS) + " |",
             "|---|---|---|" + "---|" * len(COLUMNS)]
    for model in dict.fromkeys(row["model"] for row in rows):
        own = [row for row in rows if row["model"] == model]
        name = Path(model).name
        for row in own:
            lines.append(f"| {name} | {row['photo']} | {row['style']} | "
                         + " | ".join(f"{row[k]:.3f}" for k, _ in COLUMNS) + " |")
        means = {k: float(np.mean([row[k] for row in own])) for k, _ in COLUMNS}
        lines.append(f"| **{name}** | **mean** | | " + " | ".join(f"**{means[k]:.3f}**" for k, _ in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = utils.ArgumentParser(description=__doc__)
    parser.add_argument("--models", required=True, metavar="A.pth,B.pth",
                        help="the models to measure, separated by commas")
    parser.add_argument("--styles", default=None, metavar="A.png,B.jpg",
                        help="each model's style image, in the same order, for models without provenance "
                             "(default: from each model's provenance; every style of a conditional model)")
    parser.add_argument("--photos", default=str(ROOT / "images/content-images"),
                        help="folder of photos to render (default: the bundled photos)")
    parser.add_argument("--max-size", type=utils.positive_int, default=512,
                        help="render_image.py --max-size of the results (default: %(default)s)")
    parser.add_argument("--style-size", type=utils.positive_int, default=256,
                        help="scale each style image's shorter side to this many pixels before comparing, as train.py "
                             "--style-size does (texture depends on scale); the demo models are trained with "
                             "256 (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="render_image.py --device (default: %(default)s)")
    parser.add_argument("--precision", default="fp32",
                        help="render_image.py --precision; fp32 gives the same figures on every machine "
                             "(default: %(default)s)")
    parser.add_argument("--keep", default=None, metavar="DIR",
                        help="keep the rendered results in DIR/<model name>/ (DIR/<model name>-style<I>/ for a "
                             "conditional model's style I; default: a temporary folder)")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="also write every figure, with the command, to this JSON file (default: none)")
    args = parser.parse_args(argv)
    models = [utils.require_file(p, "--models") for p in args.models.split(",") if p]
    if args.styles:
        styles = [utils.require_file(p, "--styles") for p in args.styles.split(",") if p]
        if len(styles) != len(models):
            raise utils.UserError(f"--styles: {len(styles)} style images for {len(models)} models")
        for model in models:
            if getattr(model_files.load_transformer(model), "style_count", 1) > 1:
                raise utils.UserError(f"--styles: {model} is a conditional model; its styles come from its "
                                      "provenance, leave out --styles")
        subjects = [(model, None, style) for model, style in zip(models, styles, strict=True)]
    else:
        subjects = [(model, index, style) for model in models for index, style in styles_of(model)]
    photos = image_io.list_images(args.photos)
    if not photos:
        raise utils.UserError(f"--photos: no images in {args.photos}")
    with tempfile.TemporaryDirectory() as temporary:
        output_dir = Path(args.keep) if args.keep else Path(temporary)
        rows = measure(subjects, photos, args.max_size, args.style_size, args.device, args.precision, output_dir)
    print(table(rows))
    if args.json:
        utils.save_json({"command": model_files.command_line("benchmarks/style_metrics.py", argv),
                         "machine": model_files.machine_description(torch.device(args.device)), "rows": rows},
                        args.json)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    utils.run_main(main)
