"""Generate the project's own two style images: a stained-glass mosaic and bold swirling brush strokes.

    python tools/make_style_images.py        # writes images/style-images/stained-glass.png, brush-strokes.jpg
    python tools/make_style_images.py --size 256 --seed 3 --out-dir /tmp/styles

Everything is drawn from a seeded random generator, so the same --size and --seed give the same files.
"""

import argparse
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

JEWEL_COLOURS = np.array([  # RGB: ruby, garnet, sapphire, cobalt, emerald, jade, amethyst, amber, topaz, turquoise
    (190, 20, 45), (140, 10, 60), (20, 50, 170), (40, 90, 210), (10, 140, 70),
    (60, 170, 110), (110, 40, 160), (235, 150, 20), (245, 200, 60), (20, 160, 180),
], dtype=np.float32)
LEAD_COLOUR = np.array((28, 28, 32), dtype=np.float32)

# Warm/cool painting palette, from deep night blue to vermilion; a smooth field picks a position along it.
PAINT_COLOURS = np.array([
    (20, 30, 80), (30, 70, 150), (50, 130, 190), (120, 190, 200),
    (245, 225, 140), (245, 175, 50), (225, 100, 30), (170, 40, 30),
], dtype=np.float32)


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """A size x size field in [0, 1] with about `cells` blobs across: upsampled random values, then blurred."""
    small = rng.random((cells, cells), dtype=np.float32)
    field = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    field = cv2.GaussianBlur(field, (0, 0), size / cells / 2)
    return (field - field.min()) / max(float(np.ptp(field)), 1e-6)


def nearest_seed_labels(points: np.ndarray, size: int) -> np.ndarray:
    """Label every pixel with the index (1..n) of its nearest point: a raster Voronoi diagram."""
    seeds = np.full((size, size), 255, np.uint8)
    xy = np.clip(points.round().astype(int), 0, size - 1)
    seeds[xy[:, 1], xy[:, 0]] = 0
    _, labels = cv2.distanceTransformWithLabels(seeds, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    return labels


def relaxed_points(rng: np.random.Generator, size: int, count: int, iterations: int = 2) -> np.ndarray:
    """Random points moved towards their cells' centroids (Lloyd), so the cells are even but not regular."""
    points = rng.uniform(0, size, (count, 2))
    ys, xs = np.mgrid[0:size, 0:size]
    for _ in range(iterations):
        labels = nearest_seed_labels(points, size).ravel()
        area = np.bincount(labels)
        keep = area > 0
        points = np.stack([np.bincount(labels, xs.ravel())[keep] / area[keep],
                           np.bincount(labels, ys.ravel())[keep] / area[keep]], axis=1)
    return points


def stained_glass(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    points = relaxed_points(rng, size, count=110)
    labels = nearest_seed_labels(points, size)

    cell_colours = JEWEL_COLOURS[rng.integers(0, len(JEWEL_COLOURS), labels.max() + 1)]
    cell_colours *= rng.uniform(0.8, 1.1, (len(cell_colours), 1)).astype(np.float32)
    glass = cell_colours[labels]

    # Each pane is brightest in its middle and darker towards the lead, with a mottled, uneven thickness.
    border = np.zeros((size, size), np.uint8)
    border[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    border[:-1, :] |= labels[:-1, :] != labels[1:, :]
    border[[0, -1], :] = border[:, [0, -1]] = 1
    to_lead = cv2.distanceTransform(1 - border, cv2.DIST_L2, 5)
    pane_shade = 0.55 + 0.45 * np.sqrt(np.clip(to_lead / (0.045 * size), 0, 1))
    mottle = 0.8 + 0.3 * smooth_noise(rng, size, 24) + 0.1 * smooth_noise(rng, size, 96)
    ys, xs = np.mgrid[0:size, 0:size] / size
    daylight = 0.85 + 0.3 * np.exp(-((xs - 0.35) ** 2 + (ys - 0.25) ** 2) / 0.18)
    glass *= (pane_shade * mottle * daylight)[..., None]

    # Lead came: a dark band over every border, with a faint raised ridge along its middle.
    half_width = max(1.0, 0.009 * size)
    lead = np.clip(half_width + 0.8 - to_lead, 0, 1)[..., None]
    ridge = np.clip(1 - to_lead / half_width, 0, 1)[..., None] * 22
    image = glass * (1 - lead) + (LEAD_COLOUR + ridge) * lead
    return np.clip(image, 0, 255).astype(np.uint8)


def swirl_field(rng: np.random.Generator, size: int) -> np.ndarray:
    """Stroke direction (radians) at every pixel: a few vortices over a gentle drift, bent by smooth noise."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    vx = np.full_like(xs, 1.0)
    vy = np.full_like(xs, 0.3)
    for _ in range(5):
        cx, cy = rng.uniform(0.1, 0.9, 2)
        spin = rng.choice([-1.0, 1.0]) * rng.uniform(0.6, 1.2)
        dx, dy = xs - cx, ys - cy
        falloff = spin * np.exp(-(dx**2 + dy**2) / 0.04) / np.sqrt(dx**2 + dy**2 + 1e-3)
        vx += -dy * falloff * 6
        vy += dx * falloff * 6
    return np.arctan2(vy, vx) + 0.8 * (smooth_noise(rng, size, 5) - 0.5)


def trace_stroke(angle: np.ndarray, start: np.ndarray, length: float, step: float) -> np.ndarray:
    """Follow the direction field both ways from `start`, `length` pixels in all; returns the (n, 2) path."""
    size = angle.shape[0]
    halves = []
    for sign in (-1, 1):
        path = [start]
        for _ in range(max(1, int(length / step / 2))):
            x, y = path[-1]
            if not (0 <= x < size and 0 <= y < size):
                break
            a = angle[int(y), int(x)]
            path.append(path[-1] + sign * step * np.array([np.cos(a), np.sin(a)]))
        halves.append(path)
    return np.array(halves[0][::-1] + halves[1][1:])


def draw_stroke(canvas: np.ndarray, path: np.ndarray, width: float, colour: np.ndarray,
                rng: np.random.Generator) -> None:
    """Paint one stroke as a bundle of bristles beside the path; outer bristles are shorter, so the ends taper."""
    tangent = np.gradient(path, axis=0)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1) / (np.linalg.norm(tangent, axis=1, keepdims=True) + 1e-6)
    bristles = max(1, int(width / 2))
    thickness = max(1, round(1.1 * width / bristles))
    for offset in np.linspace(-width / 2, width / 2, bristles):
        trim = int(abs(offset) / width * len(path) * 0.5)
        line = (path + offset * normal)[trim:len(path) - trim]
        if len(line) < 2:
            continue
        shade = np.clip(colour * rng.uniform(0.8, 1.15) + rng.normal(0, 8, 3), 0, 255)
        cv2.polylines(canvas, [np.round(line * 16).astype(np.int32)], False, shade.tolist(), thickness,
                      cv2.LINE_AA, shift=4)


def paint_colour(position: float) -> np.ndarray:
    """The palette colour at `position` in [0, 1], blended between its two nearest entries."""
    scaled = np.clip(position, 0, 1) * (len(PAINT_COLOURS) - 1)
    low = min(int(scaled), len(PAINT_COLOURS) - 2)
    return PAINT_COLOURS[low] + (scaled - low) * (PAINT_COLOURS[low + 1] - PAINT_COLOURS[low])


def brush_strokes(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    angle = swirl_field(rng, size)
    hue = smooth_noise(rng, size, 4)
    scale = size / 512
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[:] = paint_colour(0.5).astype(np.uint8)

    # Broad strokes first, then ever finer ones on top, as a painter would.
    for count, width, length in [(500, 22, 130), (1100, 13, 85), (1600, 7, 50)]:
        for _ in range(count):
            start = rng.uniform(0, size, 2)
            path = trace_stroke(angle, start, length * scale * rng.uniform(0.6, 1.3), step=max(1.0, 3 * scale))
            tint = hue[int(start[1]), int(start[0])] + rng.normal(0, 0.08)
            draw_stroke(canvas, path, max(1.5, width * scale * rng.uniform(0.7, 1.2)), paint_colour(tint), rng)

    grain = 0.94 + 0.08 * smooth_noise(rng, size, size // 4)  # a little canvas texture
    return np.clip(canvas * grain[..., None], 0, 255).astype(np.uint8)


def save_image(image: np.ndarray, path: Path) -> None:
    """Write atomically (a hidden temporary file beside `path`, then rename), as PNG or JPEG by the suffix."""
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".png":
        Image.fromarray(image).save(tmp, format="PNG", optimize=True)
    else:
        Image.fromarray(image).save(tmp, format="JPEG", quality=95, optimize=True)
    os.replace(tmp, path)


def at_least_32(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 32:
        raise argparse.ArgumentTypeError(f"must be at least 32 (got {value})")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--out-dir", type=Path, default=Path("images/style-images"),
                        help="folder for stained-glass.png and brush-strokes.jpg (default: %(default)s)")
    parser.add_argument("--size", type=at_least_32, default=512,
                        help="side of the square images in pixels (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, make in [("stained-glass.png", stained_glass), ("brush-strokes.jpg", brush_strokes)]:
        path = args.out_dir / name
        save_image(make(args.size, args.seed), path)
        print(f"{path} ({path.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
