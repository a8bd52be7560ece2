"""Rendering with any style picture: the flags --style-image, --style-vgg-weights and (render_image.py)
--save-conditional, and turning an arbitrary-style model (arbitrary_net.py) into the conditional network of the
given pictures' predicted styles, once per image or video, before rendering.

After that the renderers see a conditional model whose styles are named after the pictures: --style-mix weights
them (the predictor's head is linear, so this is the mix of the embeddings too), and --style-schedule names them
at its keyframes (or names the pictures' paths there, without --style-image). --save-conditional writes that
network as a conditional model file, which every tool takes (renderers, distillation teachers, train.py
--add-style).
"""

import argparse
from pathlib import Path

import torch

from style_transfer import image_io, model_files
from style_transfer.arbitrary_net import ArbitraryTransformerNet, check_loss_network, predict, to_conditional
from style_transfer.conditional_net import style_names
from style_transfer.loss_network import load_loss_network
from transformer_net import TransformerNet
from utils import UserError

ARBITRARY_KINDS = "an arbitrary-style model (train.py --arbitrary, e.g. models/any-style.pth)"


def add_style_image_args(parser: argparse.ArgumentParser, save_conditional: bool = False) -> None:
    group = parser.add_argument_group("any style picture (arbitrary-style models, train.py --arbitrary)")
    group.add_argument("--style-image", default=None, metavar="PATH[,PATH...]",
                       help="render in the style of this picture (any picture; several separated by commas are "
                            "the model's styles for --style, --style-mix and --style-schedule, named after the "
                            "files); needs " + ARBITRARY_KINDS + " (default: none)")
    group.add_argument("--style-vgg-weights", default=None, metavar="NAME|PATH",
                       help="the loss network through which the model reads the style pictures: must be the one "
                            "it was trained with (a PATH to VGG16 weights has to be given again) "
                            "(default: the one the model file names)")
    if save_conditional:
        group.add_argument("--save-conditional", default=None, metavar="PATH",
                           help="also save the pictures' predicted styles as a conditional model file (every "
                                "tool takes it; no predictor, no loss network needed) (default: none)")


def _kind(model: TransformerNet) -> str:
    from style_transfer.conditional_net import ConditionalTransformerNet

    return "a conditional model" if isinstance(model, ConditionalTransformerNet) else "a plain model"


def _paths(text: str, flag: str) -> list[Path]:
    parts = [text] if Path(text).is_file() else [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise UserError(f"{flag}: no picture given")
    return [Path(p) for p in parts]


def _schedule_pictures(args: argparse.Namespace) -> list[Path]:
    """Without --style-image: the pictures a --style-schedule names at its keyframes, which it then names by
    number (rewritten in args)."""
    text = getattr(args, "style_schedule", None)
    if not text:
        return []
    pictures: list[Path] = []
    entries = []
    for entry in (e.strip() for e in text.split(";") if e.strip()):
        time, colon, target = entry.partition(":")
        target = target.strip()
        if colon and "," not in target and target and not target.isdigit():
            path = Path(target)
            if path not in pictures:
                pictures.append(path)
            target = str(pictures.index(path))
        entries.append(f"{time}{colon}{target}")
    if pictures:
        args.style_schedule = ";".join(entries)
    return pictures


def resolve_style_images(network: TransformerNet, args: argparse.Namespace, model_path: str,
                         device: torch.device) -> TransformerNet:
    """`network` ready for style_choice: an arbitrary model becomes the conditional network of the pictures'
    predicted styles; any other model is returned as it is, and refuses --style-image."""
    if not isinstance(network, ArbitraryTransformerNet):
        if args.style_image is not None:
            raise UserError(f"--style-image: {model_path} is {_kind(network)}, which renders only the styles it was "
                            f"trained on; any style picture needs {ARBITRARY_KINDS}")
        return network
    pictures = _paths(args.style_image, "--style-image") if args.style_image else _schedule_pictures(args)
    if not pictures:
        raise UserError(f"{model_path} is an arbitrary-style model: give the style with --style-image PATH "
                        "(any picture)")
    images = [image_io.load_rgb(path) for path in pictures]  # one error line for a missing or unreadable one
    name = args.style_vgg_weights or network.loss_network
    loss_network = load_loss_network(name).to(device)
    check_loss_network(network, loss_network, name, model_path)
    params = predict(network, loss_network, images)  # once per image or video, never per frame
    conditional = to_conditional(network, params, style_names(None, pictures))
    if getattr(args, "save_conditional", None):
        model_files.save_model(conditional, args.save_conditional, {
            "script": "render_image.py --save-conditional", "arbitrary_model": str(model_path), "conditional": True,
            "styles": [{"path": str(p), "name": n} for p, n in zip(pictures, conditional.style_names, strict=True)],
            "loss_network": name})
    return conditional
