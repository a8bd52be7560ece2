"""Previews while training: a few fixed photos stylised by the current network every --preview-interval steps,
one labelled row per preview step in `<log-dir>/<name>_preview.jpg` (continued on --resume), and --tensorboard,
the same losses and pictures for TensorBoard (an optional dependency).

A preview never changes training: the photos are read once at the start; the network runs in eval mode under
inference mode (no gradients, no global RNG, no change of the cuDNN settings) and is put back in train mode; only
rank 0 previews under torchrun. The tests check that a run with previews ends with bit-identical weights.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from style_transfer import image_io, rendering
from style_transfer.arbitrary_net import ArbitraryTransformerNet, style_statistics, style_tensor, to_conditional
from style_transfer.conditional_net import ConditionalTransformerNet, one_hot
from style_transfer.loss_network import load_loss_network
from utils import UserError, atomic_file, non_negative_int, warn

BUNDLED_PHOTOS = Path(__file__).resolve().parent.parent / "images" / "content-images"
PREVIEW_SIDE = 256  # the shorter side of each preview photo: keeps a preview at the cost of about a training step
MAX_PHOTOS = 4
PREVIEW_STYLES = 2  # an arbitrary model is previewed in the styles of the first pictures of --style-dir
LABEL_WIDTH = 90  # the strip left of each row that names its step
HEADER = 20  # the strip above the rows that names each column
MAX_ROWS = 200  # past this (or JPEG's limit) the oldest rows but the first are dropped
JPEG_MAX_SIDE = 65500  # the tallest picture JPEG (and Pillow's encoder) can hold
_COMMENT_KEY = "style-transfer preview"


def add_preview_args(parser: argparse.ArgumentParser) -> None:
    """The preview flags train.py and distillation.py share."""
    parser.add_argument("--preview-interval", type=non_negative_int, default=None, metavar="N",
                        help="every N steps, stylise the preview photos with the current network and add a row "
                             "to <log-dir>/<name>_preview.jpg; 0 = no previews (default: at every checkpoint, "
                             "--checkpoint-interval)")
    parser.add_argument("--preview-images", default=None, metavar="DIR",
                        help=f"the preview photos: the first {MAX_PHOTOS} images in DIR, shorter side scaled to "
                             f"{PREVIEW_SIDE} (default: the bundled photos, images/content-images/)")
    parser.add_argument("--tensorboard", action="store_true",
                        help="also write the logged losses and the previews for TensorBoard, to "
                             "<log-dir>/tensorboard/<name>/ (needs the tensorboard package; default: off)")


def check_preview_args(args: argparse.Namespace) -> None:
    """Refuse bad preview flags at once, before any work: a folder without images,
    --tensorboard without the tensorboard package."""
    if args.preview_images is not None and preview_interval(args):
        folder = Path(args.preview_images)
        if not folder.is_dir():
            raise UserError(f"--preview-images: no such folder: {folder}")
        if not image_io.list_images(folder):
            raise UserError(f"--preview-images: no images in {folder} "
                            f"(looked for {', '.join(sorted(image_io.IMAGE_EXTENSIONS))})")
    if args.tensorboard:
        summary_writer_class()


def preview_interval(args: argparse.Namespace) -> int:
    return args.checkpoint_interval if args.preview_interval is None else args.preview_interval


def summary_writer_class() -> type:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("--tensorboard needs the tensorboard package (pip install tensorboard), "
                        "or leave out --tensorboard") from None
    return SummaryWriter


def load_preview_photos(folder: Path) -> list[tuple[str, torch.Tensor]]:
    """(name, 3xHxW tensor in 0-255) of the first MAX_PHOTOS images in `folder`, shorter side PREVIEW_SIDE."""
    photos = []
    for path in image_io.list_images(folder)[:MAX_PHOTOS]:
        image = image_io.load_rgb(path)
        scale = min(1.0, PREVIEW_SIDE / min(image.size))
        size = max(4, round(image.width * scale)) // 4 * 4, max(4, round(image.height * scale)) // 4 * 4
        photos.append((path.stem, image_io.image_to_tensor(image.resize(size, Image.Resampling.LANCZOS))))
    return photos


def _preview_styles(model: torch.nn.Module, args: argparse.Namespace) -> tuple[list[str], torch.Tensor] | None:
    """For an arbitrary model: the names and loss-network statistics (N x F, computed once, on the CPU) of the
    first PREVIEW_STYLES pictures of --style-dir; None for other models."""
    if not isinstance(model, ArbitraryTransformerNet) or not getattr(args, "style_dir", None):
        return None
    paths = image_io.list_images(args.style_dir)[:PREVIEW_STYLES]
    loss_network = load_loss_network(model.loss_network)
    with torch.no_grad():
        statistics = torch.cat([style_statistics(loss_network(style_tensor(image_io.load_rgb(p), model.style_size)))
                                for p in paths])
    return [p.stem for p in paths], statistics


def _columns(model: torch.nn.Module, photos: list[tuple[str, torch.Tensor]]) -> list[tuple[str, torch.Tensor, int]]:
    """(photo name, photo, style) per column: each photo, and for a conditional model each photo in each style."""
    count = model.style_count if isinstance(model, ConditionalTransformerNet) else 1
    return [(name, photo, style) for name, photo in photos for style in range(count)]


def column_labels(model: torch.nn.Module, photos: list[tuple[str, torch.Tensor]]) -> list[str]:
    if not isinstance(model, ConditionalTransformerNet):
        return [name for name, _ in photos]
    return [f"{name}, {model.style_names[style]}" for name, _, style in _columns(model, photos)]


def stylise_columns(model: torch.nn.Module, photos: list[tuple[str, torch.Tensor]], device: torch.device,
                    precision: str) -> tuple[list[str], list[torch.Tensor]]:
    """Every photo stylised by `model` (for a conditional model, in each of its styles): the columns' labels and
    3xHxW pictures. Eval mode and inference mode, then the model's mode and style mix as they were."""
    conditional = isinstance(model, ConditionalTransformerNet)
    was_training, mix = model.training, model.style_mix.clone() if conditional else None
    with torch.no_grad():  # the conditional norms' precomputed scales and shifts, too
        model.eval()
    try:
        pictures = []
        for _, photo, style in _columns(model, photos):
            if conditional:
                with torch.no_grad():
                    model.set_style_mix(one_hot([style], model.style_count))
            pictures.append(rendering.stylize(model, photo.unsqueeze(0).to(device), precision)[0])
        return column_labels(model, photos), pictures
    finally:
        with torch.no_grad():
            if conditional:
                model.set_style_mix(mix)
            model.train(was_training)


class Previews:
    """The preview picture and the TensorBoard writer of one training run (rank 0 only; see fit())."""

    def __init__(self, model: torch.nn.Module, args: argparse.Namespace, device: torch.device, precision: str,
                 stem: str, start_step: int):
        self.model, self.device, self.precision = model, device, precision
        self.interval = preview_interval(args)
        self.path = Path(args.log_dir) / f"{stem}_preview.jpg"
        folder = Path(args.preview_images) if args.preview_images else BUNDLED_PHOTOS
        self.photos = load_preview_photos(folder) if self.interval and folder.is_dir() else []
        if self.interval and not self.photos:
            warn(f"no preview photos in {folder}: training without previews (--preview-images DIR)")
            self.interval = 0
        self.styles = _preview_styles(model, args) if self.interval else None
        shown = ConditionalTransformerNet(self.styles[0]) if self.styles else model  # what a column is
        self.labels = column_labels(shown, self.photos)
        self.widths = [photo.shape[-1] for _, photo, _ in _columns(shown, self.photos)]
        self.steps: list[int] = []
        self.rows: list[np.ndarray] = []
        if self.interval and start_step:
            self._continue(start_step)
        self.writer = None
        if args.tensorboard:
            self.writer = summary_writer_class()(str(Path(args.log_dir) / "tensorboard" / stem),
                                                 purge_step=start_step or None)

    def after_step(self, step: int) -> None:
        """Add a row to the picture (and TensorBoard) if a preview is due at `step`."""
        if not self.interval or step % self.interval:
            return
        row = self._row(step)
        self.steps.append(step)
        self.rows.append(row)
        while len(self.rows) > 2 and (len(self.rows) > MAX_ROWS or HEADER + sum(map(len, self.rows)) > JPEG_MAX_SIDE):
            del self.steps[1], self.rows[1]
        self._write()
        if self.writer is not None:
            self.writer.add_image("preview", row[:, LABEL_WIDTH:], step, dataformats="HWC")
            self.writer.flush()

    def losses(self, step: int, means: dict[str, float]) -> None:
        if self.writer is not None:
            for name, value in means.items():
                self.writer.add_scalar(f"loss/{name}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def _stylised(self) -> list[torch.Tensor]:
        model = self.model
        if self.styles:  # an arbitrary model: the network of its current predictions for the preview styles
            names, statistics = self.styles
            with torch.no_grad():
                model = to_conditional(model, model.predictor(statistics.to(self.device)), names)
        return stylise_columns(model, self.photos, self.device, self.precision)[1]

    def _row(self, step: int) -> np.ndarray:
        pictures = [image_io.tensor_to_image(p) for p in self._stylised()]
        height = max(p.height for p in pictures)
        row = Image.new("RGB", (LABEL_WIDTH + sum(p.width for p in pictures), height), "white")
        ImageDraw.Draw(row).text((8, height // 2 - 6), f"step {step}", fill="black")
        x = LABEL_WIDTH
        for picture in pictures:
            row.paste(picture, (x, 0))
            x += picture.width
        return np.asarray(row)

    def _header(self, width: int) -> Image.Image:
        header = Image.new("RGB", (width, HEADER), "white")
        draw, x = ImageDraw.Draw(header), LABEL_WIDTH
        for width, label in zip(self.widths, self.labels, strict=True):
            draw.text((x + 4, 4), label, fill="black")
            x += width
        return header

    def _write(self) -> None:
        rows = np.concatenate(self.rows)
        picture = Image.new("RGB", (rows.shape[1], HEADER + rows.shape[0]), "white")
        picture.paste(self._header(rows.shape[1]), (0, 0))
        picture.paste(Image.fromarray(rows), (0, HEADER))
        comment = json.dumps({_COMMENT_KEY: {"steps": self.steps, "row_height": self.rows[0].shape[0],
                                             "labels": self.labels}})
        try:
            with atomic_file(self.path) as temp:
                picture.save(temp, format="JPEG", quality=90, comment=comment.encode())
        except (OSError, UserError) as exc:  # a full disk, say: a preview never ends a run
            warn(f"--preview-interval: could not write {self.path} ({exc}); training goes on")

    def _continue(self, start_step: int) -> None:
        """On --resume: the rows of the existing picture up to the checkpoint's step (a picture of other
        photos or styles is started afresh, with a warning)."""
        if not self.path.is_file():
            return
        try:
            with Image.open(self.path) as opened:
                facts = json.loads(opened.info.get("comment", b"{}"))[_COMMENT_KEY]
                pixels = np.asarray(opened.convert("RGB"))
            height, steps = facts["row_height"], facts["steps"]
            if facts["labels"] != self.labels or pixels.shape[0] != HEADER + height * len(steps):
                raise ValueError("other photos or styles")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            warn(f"{self.path}: not continued ({exc}): the previews start afresh")
            return
        for index, step in enumerate(steps):
            if step <= start_step:
                self.steps.append(step)
                self.rows.append(pixels[HEADER + index * height:HEADER + (index + 1) * height].copy())
