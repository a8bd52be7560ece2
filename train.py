"""Train one transformer network against the weighted style losses of N style images (Johnson et al.).

    python train.py --datapath coco/ --stylepath mosaic.jpg,candy.jpg --style-weights 0.7,0.3

With --conditional the network carries every style on its own instead (conditional instance normalisation,
Dumoulin et al. 2017), to be chosen or mixed when rendering (render_image.py --style, --style-mix):

    python train.py --datapath coco/ --stylepath mosaic.jpg,candy.jpg --conditional
"""

import argparse
from pathlib import Path

import torch

import utils
from style_transfer import arbitrary_training, image_io, model_files, training, training_checkpoint, training_data
from style_transfer.conditional_net import (
    STYLE_NAMES_HELP,
    ConditionalTransformerNet,
    one_hot,
    style_names,
    styles_for_step,
)
from style_transfer.loss_network import load_loss_network
from transformer_net import TransformerNet
from vgg import content_loss, gram_matrix, per_image_style_loss, style_loss, total_variation


def build_parser() -> argparse.ArgumentParser:
    parser = utils.ArgumentParser(description=__doc__)
    parser.add_argument("--stylepath", default=None,
                        help="style image, or several separated by commas (a,b,c); required unless --arbitrary "
                             "or --add-style gives the styles")
    parser.add_argument("--style-weights", default=None, metavar="W1,W2,...",
                        help="one non-negative weight per style, normalised to sum 1 (default: equal)")
    parser.add_argument("--alpha", type=float, default=None,
                        help="two styles only: weights alpha and 1-alpha (the original flag)")
    parser.add_argument("--alt", type=utils.positive_int, default=None, metavar="N",
                        help="train against one style at a time, switching every N steps and cycling "
                             "through all styles (default: all styles at every step)")
    parser.add_argument("--conditional", action="store_true",
                        help="one network that carries every style on its own, chosen or mixed when rendering: "
                             "each image of a step is trained against one style, in turn (default: off, one "
                             "fixed blend of the styles)")
    parser.add_argument("--style-names", default=None, metavar="A,B,...", help=STYLE_NAMES_HELP)
    parser.add_argument("--style-size", type=utils.positive_int, default=None,
                        help="scale each style image's shorter side to this many pixels (default: as is)")
    parser.add_argument("--content-weight", type=utils.non_negative_float, default=1e5,
                        help="content loss weight (default: %(default)s)")
    parser.add_argument("--style-weight", type=utils.non_negative_float, default=1e10,
                        help="style loss weight (default: %(default)s)")
    parser.add_argument("--tv-weight", type=utils.non_negative_float, default=0.0,
                        help="total-variation (smoothness) loss weight (default: %(default)s)")
    arbitrary_training.add_arbitrary_args(parser)
    training.add_training_args(parser)
    return parser


def style_paths(text: str) -> list[Path]:
    """Split `a.jpg,b.jpg`; a single existing path that contains commas is kept whole."""
    parts = [text] if Path(text).is_file() else [p for p in text.split(",") if p]
    return [utils.require_file(p, "--stylepath") for p in parts]


def style_weights_from_args(args: argparse.Namespace, count: int) -> list[float]:
    if args.conditional:
        given = [flag for flag, value in (("--style-weights", args.style_weights), ("--alpha", args.alpha),
                                          ("--alt", args.alt)) if value is not None]
        if given:
            raise utils.UserError(f"{given[0]} blends the styles at training time; with --conditional each "
                                  "style is trained on its own and mixed when rendering (--style-mix)")
        return [1.0] * count
    if args.style_names is not None:
        raise utils.UserError("--style-names names the styles of a --conditional model")
    if args.alt is not None:
        given = [flag for flag, value in (("--style-weights", args.style_weights), ("--alpha", args.alpha))
                 if value is not None]
        if given:
            raise utils.UserError(f"--alt trains against one style at a time, each at full weight: {given[0]} "
                                  "would be ignored (leave it out, or leave out --alt to blend the styles)")
    if args.alpha is None:
        return utils.parse_weights(args.style_weights, count, "--style-weights")
    if args.style_weights is not None:
        raise utils.UserError("give either --alpha or --style-weights, not both")
    if count != 2 or not 0 <= args.alpha <= 1:
        raise utils.UserError(f"--alpha needs exactly two styles and a value in [0, 1] (got {count} styles, "
                              f"alpha {args.alpha})")
    return utils.parse_weights(f"{args.alpha},{1 - args.alpha}", count, "--alpha")


def weights_for_step(step: int, style_weights: list[float], alt: int | None) -> list[float]:
    """The style weights in force at `step`: all of them, or with --alt one style at a time."""
    if alt is None:
        return style_weights
    active = (step // alt) % len(style_weights)
    return [1.0 if i == active else 0.0 for i in range(len(style_weights))]


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    training.require_writable_folders(args)
    if arbitrary_training.wanted(args):
        train_without_stylepath(args, argv)
        return
    if args.stylepath is None:
        raise utils.UserError("--stylepath is required (or --arbitrary --style-dir DIR, or --add-style PICTURE "
                              "--init-from MODEL)")
    paths = style_paths(args.stylepath)
    style_weights = style_weights_from_args(args, len(paths))
    style_images = [image_io.load_rgb(p, args.style_size) for p in paths]
    args.savename = args.savename or "+".join(p.stem for p in paths)
    if not Path(args.savename).suffix:
        args.savename += ".pth"
    dataset = training_data.ImageFolderDataset(args.datapath, args.image_size)
    device = training.training_device(args.device)
    vgg = load_loss_network(args.vgg_weights).to(device)

    with torch.no_grad():
        style_grams = [[gram_matrix(f) for f in vgg(image_io.image_to_tensor(image).unsqueeze(0).to(device))]
                       for image in style_images]

    torch.manual_seed(args.seed)
    names = style_names(args.style_names, paths) if args.conditional else None
    model = ConditionalTransformerNet(names) if args.conditional else TransformerNet()

    def compute_losses(network: torch.nn.Module, content: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        if args.conditional:  # every image against its own style
            styles = styles_for_step(step, args.batch_size, len(paths), len(dataset), content.device)
            stylised = network(content, one_hot(styles, len(paths)))
        else:
            stylised = network(content)
        with torch.no_grad():
            content_relu2_2 = vgg(content, depth=2)[1]
        stylised_features = vgg(stylised)
        if args.conditional:
            style = per_image_style_loss(stylised_features, style_grams, styles)
        else:
            style = style_loss(stylised_features, style_grams, weights_for_step(step, style_weights, args.alt))
        losses = {
            "content": args.content_weight * content_loss(stylised_features, content_relu2_2),
            "style": args.style_weight * style,
        }
        if args.tv_weight:
            losses["tv"] = args.tv_weight * total_variation(stylised)
        losses["total"] = sum(losses.values())
        return losses

    provenance = {
        "script": "train.py", "method": "loss", "command": model_files.command_line("train.py", argv),
        "styles": ([{"path": str(p), "name": n} for p, n in zip(paths, names, strict=True)] if args.conditional
                   else [{"path": str(p), "weight": w} for p, w in zip(paths, style_weights, strict=True)]),
        "conditional": args.conditional,
        "alt": args.alt, "content_weight": args.content_weight, "style_weight": args.style_weight,
        "tv_weight": args.tv_weight, "seed": args.seed,
    }
    resume_settings = {"--stylepath": training_checkpoint.paths_setting(paths),
                       "--style-weights": training_checkpoint.weights_setting(style_weights),
                       **{flag: training_checkpoint.number_setting(value) for flag, value in (
                           ("--content-weight", args.content_weight), ("--style-weight", args.style_weight),
                           ("--tv-weight", args.tv_weight))}}
    model_path = training.fit(model, compute_losses, dataset, args, device, provenance, resume_settings)
    print(f"model saved to {model_path}")


def train_without_stylepath(args: argparse.Namespace, argv: list[str] | None) -> None:
    """--arbitrary or --add-style: the styles and the model come from arbitrary_training, the loop from fit()."""
    arbitrary_training.check_flags(args)
    dataset = training_data.ImageFolderDataset(args.datapath, args.image_size)
    device = training.training_device(args.device)
    vgg = load_loss_network(args.vgg_weights).to(device)
    model, compute_losses, provenance, resume_settings = arbitrary_training.run(args, vgg, device)
    if not Path(args.savename).suffix:
        args.savename += ".pth"
    provenance = {**provenance, "command": model_files.command_line("train.py", argv)}
    model_path = training.fit(model, compute_losses, dataset, args, device, provenance, resume_settings)
    print(f"model saved to {model_path}")


if __name__ == "__main__":
    utils.run_main(main)
