"""Stylise a photo, or every photo in a folder, with a trained model.

    python render_image.py --content-path photo.jpg --model-path models/blend.pth --output-path out.jpg
    python render_image.py --content-path photos/ --model-path models/blend.pth --output-path stylised/ --format png

The output has the input's size and orientation (EXIF rotation applied) unless --max-size or
--scale make it smaller; grayscale input gives grayscale output, an alpha channel is kept, a
palette image comes out as RGB(A), and 16-bit, 32-bit and float input gives 8-bit output (read by
the range its values use). An image too large for the device's memory is rendered in overlapping
tiles (--tile). Any model from train.py, from the PyTorch fast_neural_style example or from the
original multi-style repo works. A conditional model (train.py --conditional) renders any of its
styles or a mix of them:

    python render_image.py --content-path photo.jpg --model-path styles.pth --output-path out.jpg --style-mix 0.3,0.7
"""

import argparse
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

import utils
from style_transfer import image_io, model_files, rendering, stroke_scale, style_choice, style_images, tiling
from transformer_net import TransformerNet


def build_parser() -> argparse.ArgumentParser:
    parser = utils.ArgumentParser(description=__doc__)
    parser.add_argument("--content-path", "--content-image", dest="content", required=True, metavar="PATH",
                        help="the image to stylise, or a folder: every image below it is rendered")
    parser.add_argument("--model-path", "--model", dest="model", required=True, metavar="PATH",
                        help="the model file (.pth or .model)")
    parser.add_argument("--output-path", "--output-image", dest="output", required=True, metavar="PATH",
                        help="the output image, its extension picks the format (an existing folder: the "
                             "input's name inside it); for a folder of inputs, the output folder")
    parser.add_argument("--format", default="same", metavar="EXT",
                        help="for folders: the outputs' extension, e.g. png or jpg; same keeps each input's "
                             "(default: %(default)s)")
    parser.add_argument("--max-size", type=utils.positive_int, default=None, metavar="N",
                        help="render smaller, so that the longer side is at most N pixels (default: no limit)")
    parser.add_argument("--scale", type=utils.positive_float, default=1.0, metavar="F",
                        help="render at F times the input's size (default: %(default)s)")
    parser.add_argument("--content-scale", type=utils.positive_float, default=1.0, metavar="F",
                        help="the PyTorch example's flag: render at 1/F times the input's size "
                             "(default: %(default)s)")
    rendering.add_render_args(parser)
    stroke_scale.add_stroke_scale_arg(parser)
    style_images.add_style_image_args(parser, save_conditional=True)
    style_choice.add_style_args(parser)
    parser.add_argument("--tile", type=tiling.tile_side, default=None, metavar="N",
                        help=f"render in overlapping tiles of at most N x N pixels (N >= {tiling.MIN_TILE}, rounded "
                             "down to a multiple of 4): the network's memory is then that of a tile, whatever the "
                             "image's size; 0 never tiles. "
                             "Default: tile only an image whose whole-image render would not fit in the device's "
                             "free memory (on the CPU: half the RAM available), in tiles of up to "
                             f"{tiling.MAX_AUTO_TILE}, and render an image that runs out of memory anyway again in "
                             "tiles")
    parser.add_argument("--tile-stats", choices=["sample", "exact"], default="sample",
                        help="where tiles get the whole image's instance-norm statistics from: sample = one pass over "
                             f"full-resolution crops of up to {tiling.SAMPLE_PIXELS / 2**20:g} megapixel (the whole "
                             "image when it is that small, exact then); exact = one pass over all tiles per "
                             "normalisation layer, the whole-image result at any size but several times slower "
                             "(default: %(default)s)")
    return parser


def plan_outputs(content: Path, output: Path, image_format: str) -> list[tuple[Path, Path]]:
    """(input, output) pairs: one for a file, one per image for a folder (names and subfolders kept)."""
    suffix = None if image_format.lower() == "same" else "." + image_format.lower().lstrip(".")
    if content.is_dir():
        if output.is_file():
            raise utils.UserError(f"--output-path: {output} is a file, but --content-path is a folder")
        if output.resolve() == content.resolve():
            raise utils.UserError(f"--output-path: {output} is the input folder: the outputs would overwrite or mix "
                                  "with the inputs (choose another folder)")
        images = [p for p in image_io.list_images(content) if output.resolve() not in p.resolve().parents]
        if not images:
            raise utils.UserError(f"--content-path: no images in {content} "
                                  f"(looked for {', '.join(sorted(image_io.IMAGE_EXTENSIONS))})")
        pairs = [(p, output / p.relative_to(content).with_suffix(suffix or p.suffix)) for p in images]
    elif content.is_file():
        if output.is_dir():
            output = output / (content.stem + (suffix or content.suffix))
        pairs = [(content, output)]
    else:
        raise utils.UserError(f"--content-path: no such file or folder: {content}")
    written: dict[Path, Path] = {}
    for source, target in pairs:
        if target.resolve() == source.resolve() or (target.exists() and target.samefile(source)):
            raise utils.UserError(f"--output-path: {target} is the input {source}: it would be overwritten "
                                  "(choose another name or folder)")
        image_io.image_format(target)
        if target in written:
            raise utils.UserError(f"{written[target]} and {source} would both be written to {target} "
                                  "(use --format same)")
        written[target] = source
    return pairs


def output_size(size: tuple[int, int], args: argparse.Namespace) -> tuple[int, int]:
    scale = args.scale / args.content_scale
    if args.max_size is not None:
        scale = min(scale, args.max_size / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def render(model: TransformerNet, tiler: tiling.TiledRenderer, picture: image_io.Picture, args: argparse.Namespace,
           device: torch.device, precision: str) -> Image.Image:
    """The stylised picture, at --stroke-scale 1 (the default) directly, else through stroke_scale."""
    picture = picture.resized(output_size(picture.rgb.size, args))
    if args.stroke_scale == 1:
        return picture.with_pixels(render_rgb(model, tiler, picture.rgb, args, device, precision,
                                              args.preserve_color, args.strength))

    def stylise(small: torch.Tensor) -> torch.Tensor:
        image = render_rgb(model, tiler, image_io.tensor_to_image(small[0]), args, device, precision, False, 1.0)
        return image_io.image_to_tensor(image).unsqueeze(0)

    photo = image_io.image_to_tensor(picture.rgb).unsqueeze(0)
    try:
        stylised = stroke_scale.stylise_with_stroke_scale(photo, args.stroke_scale, stylise, args.preserve_color,
                                                          args.strength)
    except RuntimeError as exc:  # the full-resolution detail pass runs in the RAM, whole
        problem = utils.too_large_for_device(exc)
        if problem is None:
            raise
        width, height = picture.rgb.size
        raise utils.TooLarge(f"{problem} bringing back the photo's detail at {width}x{height} (--stroke-scale "
                             f"{args.stroke_scale:g}); try --max-size {max(width, height) // 2}") from None
    return picture.with_pixels(image_io.tensor_to_image(stylised[0]))


def render_rgb(model: TransformerNet, tiler: tiling.TiledRenderer, image: Image.Image, args: argparse.Namespace,
               device: torch.device, precision: str, preserve_color: bool, strength: float) -> Image.Image:
    """The stylised RGB pixels: whole, or in tiles where --tile or the memory-fit decision says so, or where the
    whole image runs out of memory (unless --tile 0)."""
    tile = tiling.choose_tile(image.size, args.tile, precision, device)
    if not tile:
        try:
            return render_whole(model, image, device, precision, preserve_color, strength)
        except utils.TooLarge as exc:
            problem = str(exc)  # leave the except block first: its traceback holds on to the network's activations
        tile = 0 if args.tile == 0 else tiling.fallback_tile(image.size, precision, device)
        if not tile:
            smaller = max(1, max(image.size) // 2)
            other_device = "" if device.type == "cpu" else " or --device cpu"
            raise utils.TooLarge(f"{problem}; try --max-size {smaller}{other_device}")
        utils.warn(f"{problem}: rendering it in tiles of {tile} pixels instead")
    try:
        return tiler.render(image, tile, preserve_color, strength, args.tile_stats == "exact")
    except utils.TooLarge as exc:
        smaller = tile // 2 - tile // 2 % 4
        hint = f"--tile {smaller}" if smaller >= tiling.MIN_TILE else f"--max-size {max(image.size) // 2}"
        raise utils.TooLarge(f"{exc} (in tiles of {tile}); try {hint}") from None


def render_whole(model: TransformerNet, image: Image.Image, device: torch.device, precision: str,
                 preserve_color: bool = False, strength: float = 1.0) -> Image.Image:
    batch = image_io.image_to_tensor(image).unsqueeze(0).to(device)
    stylised = rendering.stylize(model, batch, precision, preserve_color, strength)
    return image_io.tensor_to_image(stylised[0])


def network_sizes(pairs: list[tuple[Path, Path]], args: argparse.Namespace) -> dict[Path, tuple[int, int]]:
    """The size the network renders each readable image at (its output size, over --stroke-scale), from the
    images' headers."""
    sizes = {}
    for source, _ in pairs:
        try:
            with Image.open(source) as image:
                width, height = output_size(image.size, args)
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
        sizes[source] = max(1, round(width / args.stroke_scale)), max(1, round(height / args.stroke_scale))
    return sizes


def choose_runtime(pairs: list[tuple[Path, Path]], args: argparse.Namespace, device: torch.device,
                   precision: str) -> str:
    """utils.choose_runtime for these images; with OpenVINO, which compiles for each size, `pairs` are put in order
    of size, so that each size is compiled once."""
    sizes: dict[Path, tuple[int, int]] = {}

    def work() -> tuple[int, int]:
        sizes.update(network_sizes(pairs, args))
        return sum(width * height for width, height in sizes.values()), len(set(sizes.values()))

    runtime = utils.choose_runtime(args.runtime, device, precision, args.compile, work)
    if runtime == "openvino" and len(pairs) > 1:
        sizes = sizes or network_sizes(pairs, args)
        pairs.sort(key=lambda pair: sizes.get(pair[0], (0, 0)))
    return runtime


def main(argv: list[str] | None = None) -> None:
    if style_choice.list_styles_if_asked(argv):
        return
    args = build_parser().parse_args(argv)
    content, output = Path(args.content), Path(args.output)
    pairs = plan_outputs(content, output, args.format)
    device = utils.choose_device(args.device)
    precision = utils.choose_precision(args.precision, device)
    runtime = choose_runtime(pairs, args, device, precision)
    network = model_files.load_transformer(args.model, device, arbitrary=True)
    network = style_images.resolve_style_images(network, args, args.model, device)
    style_choice.apply_style_choice(network, args, args.model)
    whole = rendering.prepare_for_rendering(network, precision, runtime=runtime) if runtime != "torch" else None
    model = rendering.prepare_for_rendering(network, precision)
    tiler = tiling.TiledRenderer(model, precision, args.compile)  # a copy of its own, in PyTorch
    model = whole or utils.compile_network(model, args.compile, inference=True)
    unreadable = []
    for source, target in tqdm(pairs, unit="image", disable=len(pairs) == 1, dynamic_ncols=True):
        try:
            picture = image_io.open_picture(source)
        except utils.UserError as exc:
            if len(pairs) == 1:
                raise
            utils.warn(f"skipped: {exc}")
            unreadable.append(source)
            continue
        try:
            image = render(model, tiler, picture, args, device, precision)
        except utils.TooLarge as exc:
            raise utils.TooLarge(f"{source}: {exc}") from None
        image_io.save_image(image, target)
    if unreadable:
        raise utils.UserError(f"{len(unreadable)} of {len(pairs)} images could not be read (see the warnings "
                              f"above); the others are in {output}")
    print(f"wrote {pairs[0][1]}" if content.is_file() else f"wrote {len(pairs)} images to {output}")


if __name__ == "__main__":
    utils.run_main(main)
