"""What --stroke-scale does, measured on photos with the bundled models (fp32, on the CPU by default).

    python benchmarks/stroke_scale.py --photos images/content-images,../shared/data/content-images/amber.jpg \\
        --models models/brush-strokes.pth,models/stained-glass.pth --json benchmarks/stroke-scale-cpu-2core.json

Per photo and model, with S = --scale (default 2):

- large-scale look: the --stroke-scale S render and the plain 1/S-resolution render upscaled (bicubic), both
  blurred to the coarse scale (Gaussian, sigma = 2 S pixels): PSNR and mean absolute difference (0-255). As a
  reference, the same between the full-resolution render (--stroke-scale 1) and the upscaled 1/S render: how far
  apart two different looks are at that scale.
- edges: Pearson correlation of the luminance gradient magnitudes (Sobel) of the result and the photo, for the
  --stroke-scale S render and for the plain upscale of the 1/S render (and the full-resolution render).
- texture scale, for S = 1, 2, 4: the power-weighted mean wavelength (pixels) of the radial power spectrum of the
  result's luminance minus its Gaussian-smoothed self (sigma 24 pixels): the size of the painted texture.
"""

import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import utils  # noqa: E402  (after the path above)
from style_transfer import image_io, model_files, rendering, stroke_scale  # noqa: E402

_SOBEL = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
TEXTURE_SCALES = (1, 2, 4)
TEXTURE_SMOOTHING = 24.0


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-offsets ** 2 / (2 * sigma ** 2))
    kernel = (kernel / kernel.sum()).to(x.dtype)
    channels = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(x, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a - b).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def edge_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    def magnitude(x: torch.Tensor) -> torch.Tensor:
        kernels = torch.stack([_SOBEL, _SOBEL.T]).unsqueeze(1)
        return F.conv2d(rendering.luminance(x), kernels).pow(2).sum(dim=1).sqrt().flatten().double()

    return torch.corrcoef(torch.stack([magnitude(a), magnitude(b)]))[0, 1].item()


def texture_wavelength(x: torch.Tensor) -> float:
    """The power-weighted mean wavelength (pixels) of the luminance's high-pass (minus a Gaussian blur)."""
    luminance = rendering.luminance(x)
    detail = (luminance - gaussian_blur(luminance, TEXTURE_SMOOTHING))[0, 0].double().numpy()
    detail = detail * np.outer(np.hanning(detail.shape[0]), np.hanning(detail.shape[1]))
    power = np.abs(np.fft.fft2(detail)) ** 2
    fy = np.fft.fftfreq(detail.shape[0])[:, None]
    fx = np.fft.fftfreq(detail.shape[1])[None, :]
    radius = np.sqrt(fx ** 2 + fy ** 2)
    mask = radius > 0
    return float(1 / ((radius[mask] * power[mask]).sum() / power[mask].sum()))


def measure(model: torch.nn.Module, photo: torch.Tensor, scale: float) -> dict:
    def stylise(batch: torch.Tensor) -> torch.Tensor:
        return rendering.stylize(model, batch)

    full = stylise(photo)
    small = stroke_scale.downscale(photo, scale).round()
    plain = F.interpolate(stylise(small), size=photo.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 255)
    scaled = stroke_scale.stylise_with_stroke_scale(photo, scale, stylise)
    sigma = 2 * scale
    coarse = {name: gaussian_blur(x, sigma) for name, x in (("full", full), ("plain", plain), ("scaled", scaled))}
    textures = {s: texture_wavelength(full if s == 1 else stroke_scale.stylise_with_stroke_scale(photo, s, stylise))
                for s in TEXTURE_SCALES}
    return {
        "coarse_psnr_db": {"stroke_scale_vs_plain_upscale": psnr(coarse["scaled"], coarse["plain"]),
                           "full_resolution_vs_plain_upscale": psnr(coarse["full"], coarse["plain"])},
        "coarse_mean_abs": {"stroke_scale_vs_plain_upscale": (coarse["scaled"] - coarse["plain"]).abs().mean().item(),
                            "full_resolution_vs_plain_upscale": (coarse["full"] - coarse["plain"]).abs().mean().item()},
        "edge_correlation_with_photo": {"stroke_scale": edge_correlation(scaled, photo),
                                        "plain_upscale": edge_correlation(plain, photo),
                                        "full_resolution": edge_correlation(full, photo)},
        "texture_wavelength_px": {str(s): w for s, w in textures.items()},
    }


def photo_paths(text: str) -> list[Path]:
    paths = []
    for part in text.split(","):
        path = Path(part)
        paths += image_io.list_images(path) if path.is_dir() else [utils.require_file(path, "--photos")]
    return paths


@torch.no_grad()  # and not torch.set_grad_enabled(False): main() also runs inside tests
def main(argv: list[str] | None = None) -> None:
    parser = utils.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", default=str(ROOT / "images/content-images"),
                        help="photos or folders, separated by commas (default: the bundled photos)")
    parser.add_argument("--models", default=str(ROOT / "models/brush-strokes.pth"),
                        help="models, separated by commas (default: %(default)s)")
    parser.add_argument("--scale", type=stroke_scale.stroke_scale, default=2.0, help="S (default: %(default)s)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results here")
    args = parser.parse_args(argv)
    rows = []
    for model_path in args.models.split(","):
        model = model_files.load_transformer(model_path).eval()
        for path in photo_paths(args.photos):
            photo = image_io.image_to_tensor(image_io.load_rgb(path)).unsqueeze(0)
            result = {"model": Path(model_path).name, "photo": path.name,
                      "size": f"{photo.shape[-1]}x{photo.shape[-2]}", **measure(model, photo, args.scale)}
            rows.append(result)
            psnr_row, edges, texture = (result["coarse_psnr_db"], result["edge_correlation_with_photo"],
                                        result["texture_wavelength_px"])
            print(f"{result['model']:>18} {result['photo']:>12} {result['size']:>9}: coarse PSNR "
                  f"{psnr_row['stroke_scale_vs_plain_upscale']:.1f} dB (full-res render "
                  f"{psnr_row['full_resolution_vs_plain_upscale']:.1f}); edge corr {edges['stroke_scale']:.3f} vs "
                  f"plain upscale {edges['plain_upscale']:.3f} (full-res {edges['full_resolution']:.3f}); texture "
                  + ", ".join(f"S={s}: {w:.2f} px" for s, w in texture.items()), flush=True)
    if args.json:
        utils.save_json({"command": model_files.command_line("benchmarks/stroke_scale.py", argv),
                         "machine": model_files.machine_description(torch.device("cpu")), "torch": torch.__version__,
                         "scale": args.scale, "texture_smoothing_sigma_px": TEXTURE_SMOOTHING, "rows": rows},
                        args.json)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    utils.run_main(main)
