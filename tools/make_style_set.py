"""Generate a seeded training set of style pictures for train.py --arbitrary: varied palettes, textures and stroke
scales, drawn with the code of make_style_images.py (Voronoi panes, brush strokes along swirling fields) plus
stripes, dots and quantised noise fields.

    python tools/make_style_set.py --output data/style-set --count 300 --size 192

Picture i comes from seed (--seed, i) alone: the same flags give the same files, and a larger --count only adds
pictures. Each has its own palette of 3 to 8 colours (random hues, saturations and values, sometimes a dark or a
pastel range), one of five kinds of texture, and a random scale of its strokes, cells or stripes.
"""

import argparse
import colorsys
from pathlib import Path

import cv2
import numpy as np
from make_style_images import (
    at_least_32,
    draw_stroke,
    nearest_seed_labels,
    relaxed_points,
    save_image,
    smooth_noise,
    swirl_field,
    trace_stroke,
)

KINDS = ("panes", "strokes", "stripes", "dots", "bands")


def palette(rng: np.random.Generator) -> np.ndarray:
    """3 to 8 RGB colours: hues around one or two centres, a value range that is dark, mid, pastel or wide."""
    count = int(rng.integers(3, 9))
    centres = rng.random(int(rng.integers(1, 3)))
    hues = (rng.choice(centres, count) + rng.normal(0, rng.uniform(0.03, 0.25), count)) % 1
    low, high = [(0.1, 0.5), (0.3, 0.8), (0.7, 1.0), (0.1, 1.0)][int(rng.integers(4))]
    saturation = rng.uniform(0.2, 1.0) * rng.uniform(0.5, 1.0, count)
    values = rng.uniform(low, high, count)
    return np.array([colorsys.hsv_to_rgb(h, s, v) for h, s, v in zip(hues, saturation, values, strict=True)],
                    dtype=np.float32) * 255


def panes(rng: np.random.Generator, size: int, colours: np.ndarray, scale: float) -> np.ndarray:
    points = relaxed_points(rng, size, count=max(8, int(size * size / (6 * scale) ** 2)), iterations=1)
    labels = nearest_seed_labels(points, size)
    image = colours[rng.integers(0, len(colours), labels.max() + 1)][labels]
    border = np.zeros((size, size), np.uint8)
    border[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    border[:-1, :] |= labels[:-1, :] != labels[1:, :]
    lead = cv2.dilate(border, np.ones((2, 2), np.uint8))[..., None].astype(np.float32)
    dark = colours.min(axis=0) * 0.3
    return image * (1 - lead) + dark * lead


def strokes(rng: np.random.Generator, size: int, colours: np.ndarray, scale: float) -> np.ndarray:
    angle = swirl_field(rng, size)
    hue = smooth_noise(rng, size, 4)
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[:] = colours[0].astype(np.uint8)
    width = 4 * scale
    for count, factor in ((int(900 / scale), 1.6), (int(1400 / scale), 1.0)):
        for _ in range(count // 4):
            start = rng.uniform(0, size, 2)
            path = trace_stroke(angle, start, 8 * width * rng.uniform(0.6, 1.3), step=max(1.0, width / 3))
            colour = colours[int(hue[int(start[1]), int(start[0])] * (len(colours) - 1e-3))]
            draw_stroke(canvas, path, max(1.5, factor * width * rng.uniform(0.7, 1.2)), colour, rng)
    return canvas.astype(np.float32)


def stripes(rng: np.random.Generator, size: int, colours: np.ndarray, scale: float) -> np.ndarray:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    warp = smooth_noise(rng, size, 4) * rng.uniform(0, 40)
    phase = (xs * np.cos(theta) + ys * np.sin(theta) + warp) / (3 * scale)
    index = np.floor(phase).astype(int) % len(colours)
    return colours[index]


def dots(rng: np.random.Generator, size: int, colours: np.ndarray, scale: float) -> np.ndarray:
    canvas = np.zeros((size, size, 3), np.float32)
    canvas[:] = colours[0]
    for _ in range(int(size * size / (scale * scale * 12))):
        centre = tuple(int(v) for v in rng.uniform(0, size, 2))
        radius = max(1, int(scale * rng.uniform(0.5, 1.5)))
        colour = colours[int(rng.integers(1, len(colours)))]
        cv2.circle(canvas, centre, radius, colour.tolist(), -1, cv2.LINE_AA)
    return canvas


def bands(rng: np.random.Generator, size: int, colours: np.ndarray, scale: float) -> np.ndarray:
    field = 0.6 * smooth_noise(rng, size, max(2, int(size / (6 * scale)))) + 0.4 * smooth_noise(rng, size, 3)
    index = np.clip((field * len(colours)).astype(int), 0, len(colours) - 1)
    return colours[index]


def style_picture(size: int, seed: int, index: int) -> np.ndarray:
    """Picture `index` of the set of `seed`: its kind, palette, scale and grain from its own generator."""
    rng = np.random.default_rng([seed, index])
    kind = KINDS[index % len(KINDS)]
    colours = palette(rng)
    scale = float(np.exp(rng.uniform(np.log(1.5), np.log(12)))) * size / 192  # stroke / cell size in pixels / 4
    image = globals()[kind](rng, size, colours, scale)
    grain = 0.93 + 0.1 * smooth_noise(rng, size, max(2, size // 4))
    return np.clip(image * grain[..., None], 0, 255).astype(np.uint8)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--output", type=Path, default=Path("data/style-set"),
                        help="folder for the pictures, style-0000.png ... (default: %(default)s)")
    parser.add_argument("--count", type=int, default=300, help="how many pictures (default: %(default)s)")
    parser.add_argument("--size", type=at_least_32, default=192,
                        help="side of the square pictures in pixels (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the set (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    for index in range(args.count):
        save_image(style_picture(args.size, args.seed, index), args.output / f"style-{index:04d}.png")
    print(f"wrote {args.count} pictures to {args.output}")


if __name__ == "__main__":
    main()
