"""Image files: reading any kind upright (EXIF, gray, alpha, 16-bit, 32-bit and float, palette), tensors from and
to PIL images, and writing in the format the extension names. Also the one place that sets how large an image the
suite reads (MAX_PIXELS)."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from utils import UserError, atomic_path, warn

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}

# Pillow warns above 89 megapixels and refuses above 179 as a possible "decompression bomb": far too few for the
# images of any size that render_image.py renders in tiles. Its own check is switched off here, deliberately and
# in this one place (Image.MAX_IMAGE_PIXELS is Pillow's global setting), and open_picture() applies ours instead,
# from the header, before anything is decoded: a file that claims more than MAX_PIXELS is refused in one line.
# 2 gigapixels decode to 6 GB of RGB, what a workstation can still hold; a forged header claims far more.
MAX_PIXELS = 2_000_000_000
LARGE_PIXELS = 500_000_000  # above this, one warning line says how much memory the image takes
Image.MAX_IMAGE_PIXELS = None


def list_images(folder: str | Path) -> list[Path]:
    """Every file with an image extension below `folder`, recursively, in a stable order."""
    return sorted(p for p in Path(folder).rglob("*")
                  if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def load_rgb(path: str | Path, size: int | None = None) -> Image.Image:
    """Open an image upright as RGB pixels exactly as open_picture() reads it for rendering (16-bit scaled to
    8 bits, not clipped white; alpha dropped); `size` scales its shorter side. For training photos and styles."""
    image = open_picture(path).rgb
    if size is not None:
        scale = size / min(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.LANCZOS)
    return image


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """A PIL RGB image as a 3xHxW tensor in 0-255, of torch's default dtype (float32 unless changed)."""
    return torch.from_numpy(np.asarray(image, dtype=np.float32).copy()).permute(2, 0, 1).to(torch.get_default_dtype())


def tensor_to_image(tensor: torch.Tensor) -> Image.Image:
    """A 3xHxW tensor in 0-255 (clamped and rounded) as a PIL RGB image."""
    array = tensor.detach().float().clamp(0, 255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array, "RGB")


_NO_ALPHA_FORMATS = {"JPEG", "BMP", "PPM"}


@dataclass
class Picture:
    """An image to stylise, upright: its RGB pixels, and what is needed to give the result the input's kind."""

    rgb: Image.Image
    alpha: Image.Image | None = None
    grayscale: bool = False
    icc_profile: bytes | None = None

    def resized(self, size: tuple[int, int]) -> "Picture":
        if size == self.rgb.size:
            return self
        alpha = self.alpha.resize(size, Image.Resampling.LANCZOS) if self.alpha else None
        return Picture(self.rgb.resize(size, Image.Resampling.LANCZOS), alpha, self.grayscale, self.icc_profile)

    def with_pixels(self, rgb: Image.Image) -> Image.Image:
        """`rgb` (e.g. the stylised pixels) as the input's kind: grayscale stays gray, alpha comes back."""
        image = rgb.convert("L") if self.grayscale else rgb
        if self.alpha is not None:
            image.putalpha(self.alpha)
        if self.icc_profile:
            image.info["icc_profile"] = self.icc_profile
        return image


def check_pixel_count(path: str | Path, size: tuple[int, int]) -> None:
    """UserError for an image of more than MAX_PIXELS (see there); one warning line above LARGE_PIXELS."""
    pixels = size[0] * size[1]
    if pixels > MAX_PIXELS:
        raise UserError(f"cannot read image {path}: it claims {size[0]}x{size[1]} pixels ({pixels / 1e6:,.0f} "
                        f"megapixels), more than the {MAX_PIXELS / 1e6:,.0f} this suite reads (a damaged or "
                        "forged file?)")
    if pixels > LARGE_PIXELS:
        warn(f"{path} has {pixels / 1e6:,.0f} megapixels: decoding it takes about {pixels * 3 / 1e9:.1f} GB of "
             "memory")


def to_8_bit(image: Image.Image) -> Image.Image:
    """A gray image of mode I (32-bit integer), I;16* (16-bit) or F (32-bit float) as 8-bit gray (mode L), by the
    range its values use: mode I whose maximum is at most 255 as it is (8-bit values); 16-bit (and mode I whose
    maximum is at most 65535) divided by 257; mode I beyond that
    scaled by its own maximum; float in 0-1 (its maximum at most 1, the common convention) times 255, float beyond
    that (0-255 data, or HDR) scaled by its maximum, so that no range comes out black or white. Negative values and
    NaN become black."""
    values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(values.max()) if values.size else 0.0
    if image.mode == "F":
        scale = 255 if peak <= 1 else 255 / peak
    elif image.mode == "I" and peak <= 255:  # 8-bit values in a 32-bit file (a 16-bit picture this dark is not)
        scale = 1
    else:
        scale = 1 / 257 if image.mode != "I" or peak <= 65535 else 255 / peak
    return Image.fromarray((values * scale).round().clip(0, 255).astype(np.uint8))


def open_picture(path: str | Path) -> Picture:
    """Open any image Pillow reads, upright (EXIF orientation applied); 16-bit, 32-bit and float become 8-bit."""
    try:
        with Image.open(path) as opened:
            check_pixel_count(path, opened.size)
            image = ImageOps.exif_transpose(opened)
            image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UserError(f"cannot read image {path}: {exc}") from None
    # A profile describes RGB or gray pixels; a CMYK or Lab one would not fit the RGB we make of those.
    icc_profile = image.info.get("icc_profile") if image.mode not in ("CMYK", "LAB", "HSV") else None
    if image.mode.startswith("I") or image.mode == "F":
        image = to_8_bit(image)
    grayscale = image.mode in ("1", "L", "LA", "La")
    if "transparency" in image.info or image.mode in ("PA", "RGBa", "La"):
        image = image.convert("RGBA")  # palette or single-colour transparency as an alpha channel
    alpha = image.getchannel("A") if image.mode in ("RGBA", "LA") else None
    return Picture(image.convert("RGB"), alpha, grayscale, icc_profile)


def image_format(path: str | Path) -> str:
    """The Pillow format that writes `path`, from its extension."""
    suffix = Path(path).suffix.lower()
    name = Image.registered_extensions().get(suffix)
    if name not in Image.SAVE:
        raise UserError(f"{path}: cannot write images with the extension {suffix or '(none)'!r} "
                        "(use e.g. .png, .jpg or .webp)")
    return name


def save_image(image: Image.Image, path: str | Path) -> None:
    """Write atomically in the format the extension names (JPEG at quality 95)."""
    file_format = image_format(path)
    if file_format in _NO_ALPHA_FORMATS and image.mode in ("LA", "RGBA"):
        warn(f"{Path(path).name}: {file_format} has no transparency, the alpha channel is dropped")
        image = image.convert(image.mode[:-1])
    options = {"quality": 95} if file_format in ("JPEG", "WEBP") else {}
    if image.info.get("icc_profile"):
        options["icc_profile"] = image.info["icc_profile"]
    try:
        with atomic_path(path) as temp:
            image.save(temp, format=file_format, **options)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None

