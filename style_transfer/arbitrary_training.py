"""train.py's two ways to a style without a full training run: --arbitrary --style-dir DIR (the transformer and
its style predictor trained together over a folder of style pictures, arbitrary_net.py) and --add-style NEW
--init-from MODEL (one style added to a trained conditional or arbitrary model, only that style's scales and
shifts trained; Dumoulin, Shlens and Kudlur 2017, section 4). Their flags, checks, models and loss functions;
the loop itself is training.fit, as for every other run.

--arbitrary: each image of a step gets a style picture drawn from the folder (seeded by step, so a resumed run
draws the same), augmented as Ghiasi et al. do (a random size, then a random crop of --image-size); its Grams and
the predictor's statistics come from one loss-network pass over the step's crops. What can be cached is: every
picture is decoded and scaled once, at the start.
"""

import argparse
from pathlib import Path

import torch

from style_transfer import image_io, model_files, training_checkpoint
from style_transfer.arbitrary_net import (
    ArbitraryTransformerNet,
    fingerprint_of,
    predict,
    probe_statistics,
    resized_crops,
    style_statistics,
)
from style_transfer.conditional_net import ConditionalTransformerNet, one_hot, style_names
from utils import UserError, require_file, warn
from vgg import content_loss, gram_matrix, per_image_style_loss, style_loss, total_variation

# A style picture is cached with its shorter side this many times the crop, the largest size augmentation draws.
MAX_STYLE_SCALE = 2


def add_arbitrary_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("any style (arbitrary-style models) and adding a style to a model")
    group.add_argument("--arbitrary", action="store_true",
                       help="train an arbitrary-style model: the network and a style predictor together over "
                            "the pictures of --style-dir, rendered later with any picture (render_image.py "
                            "--style-image); replaces --stylepath (default: off)")
    group.add_argument("--style-dir", default=None, metavar="DIR",
                       help="with --arbitrary: folder of style pictures, searched recursively; at least two "
                            "(hundreds for styles never seen) (default: none)")
    group.add_argument("--add-style", default=None, metavar="PICTURE",
                       help="add this style to the model of --init-from, training only its scales and shifts "
                            "(the shared convolutions frozen, the old styles bit-identical); replaces "
                            "--stylepath (default: off)")
    group.add_argument("--init-from", default=None, metavar="MODEL",
                       help="with --add-style: the conditional or arbitrary model to extend (default: none)")


def wanted(args: argparse.Namespace) -> bool:
    return bool(args.arbitrary or args.add_style is not None or args.init_from is not None or args.style_dir)


def check_flags(args: argparse.Namespace) -> None:
    """One line for every combination that makes no sense."""
    if args.arbitrary and args.add_style is not None:
        raise UserError("give either --arbitrary or --add-style, not both")
    what = "--arbitrary" if args.arbitrary else "--add-style"
    if not args.arbitrary and args.add_style is None:
        flag = "--style-dir" if args.style_dir else "--init-from"
        raise UserError(f"{flag} belongs to {'--arbitrary' if args.style_dir else '--add-style'}")
    others = [flag for flag, value in (("--conditional", args.conditional or None), ("--stylepath", args.stylepath),
                                       ("--style-weights", args.style_weights), ("--alpha", args.alpha),
                                       ("--alt", args.alt), ("--style-names", args.style_names))
              if value is not None]
    if others:
        source = "the pictures of --style-dir" if args.arbitrary else "--add-style and --init-from"
        raise UserError(f"{others[0]} cannot go with {what}: the styles come from {source}")
    if args.arbitrary and not args.style_dir:
        raise UserError("--arbitrary needs --style-dir DIR, a folder of style pictures")
    if args.add_style is not None and args.style_dir:
        raise UserError("--style-dir belongs to --arbitrary, not --add-style")
    if args.add_style is not None and args.init_from is None:
        raise UserError("--add-style needs --init-from MODEL, the conditional or arbitrary model to add it to")
    if args.arbitrary and args.init_from is not None:
        raise UserError("--init-from belongs to --add-style")


def style_folder(folder: str, crop: int) -> tuple[list[Path], list[torch.Tensor]]:
    """The usable pictures below `folder` and each as a 3 x H x W tensor, shorter side MAX_STYLE_SCALE x crop."""
    if not Path(folder).is_dir():
        raise UserError(f"--style-dir: no such folder: {folder}")
    found = image_io.list_images(folder)
    paths, images = [], []
    for path in found:
        try:
            images.append(image_io.image_to_tensor(image_io.load_rgb(path, MAX_STYLE_SCALE * crop)))
            paths.append(path)
        except UserError as exc:
            warn(f"--style-dir: skipped: {exc}")
    if len(paths) < 2:
        raise UserError(f"--style-dir: {folder} holds {len(paths)} usable pictures of {len(found)} "
                        f"(looked for {', '.join(sorted(image_io.IMAGE_EXTENSIONS))}); --arbitrary needs at "
                        "least two (hundreds for styles it never saw)")
    return paths, images


def arbitrary_run(args: argparse.Namespace, vgg: torch.nn.Module, device: torch.device):
    """(model, compute_losses, provenance, resume settings) of train.py --arbitrary."""
    crop = args.style_size or args.image_size
    paths, images = style_folder(args.style_dir, crop)
    torch.manual_seed(args.seed)
    statistics = probe_statistics(vgg)
    # Rendering reads a whole picture at 1.5 x the crop, the middle of the sizes training crops from.
    def arbitrary_network(output_norm: bool) -> ArbitraryTransformerNet:
        return ArbitraryTransformerNet(args.vgg_weights, statistics.shape[1], fingerprint_of(statistics),
                                       style_size=round(1.5 * crop), output_norm=output_norm)

    model = arbitrary_network(output_norm=True)
    if args.resume and started_without_output_norm(args.resume, model):
        warn(f"--resume: {args.resume} is of a run started without the output norm: it goes on without one")
        model = arbitrary_network(output_norm=False)

    def compute_losses(network: torch.nn.Module, content: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        generator = torch.Generator().manual_seed(args.seed * 1_000_003 + step * 1009 + rank)
        chosen = torch.randint(len(images), (len(content),), generator=generator)
        crops = resized_crops([images[i] for i in chosen], crop, generator)
        if content.device.type == "cuda":  # from pinned memory the copy does not wait for the GPU
            crops = crops.pin_memory()
        crops = crops.to(content.device, non_blocking=True)
        with torch.no_grad():
            style_features = vgg(crops)
            grams = [gram_matrix(f) for f in style_features]
            stats = style_statistics(style_features)
            content_relu2_2 = vgg(content, depth=2)[1]
        stylised = network(content, stats)
        features = vgg(stylised)
        per_image = [[g[i:i + 1] for g in grams] for i in range(len(content))]
        style = per_image_style_loss(features, per_image, torch.arange(len(content), device=content.device))
        return loss_terms(args, stylised, features, content_relu2_2, style)

    provenance = {"script": "train.py", "method": "arbitrary", "style_dir": str(args.style_dir),
                  "style_pictures": [str(p) for p in paths], "loss_network": args.vgg_weights,
                  "content_weight": args.content_weight, "style_weight": args.style_weight,
                  "tv_weight": args.tv_weight, "seed": args.seed}
    settings = {"--style-dir": training_checkpoint.paths_setting(paths), "--style-size": str(crop)}
    return model, compute_losses, provenance, settings


def started_without_output_norm(checkpoint: str, model: ArbitraryTransformerNet) -> bool:
    """Whether --resume names a checkpoint of an --arbitrary run started before such runs had an output norm (as
    `model`, built with one, has): its predictor's head gives the output norm's 3 scales and 3 shifts fewer. Such a
    run goes on as it started; any other mismatch is load_checkpoint's to report. (The checkpoint is read again
    there: a few MB, once per run.)"""
    head = model_files.checkpoint_model_state(checkpoint).get("predictor.head.weight")
    rows, columns = model.predictor.head.weight.shape
    return head is not None and tuple(head.shape) == (rows - 2 * model.output_norm.num_features, columns)


def loss_terms(args: argparse.Namespace, stylised: torch.Tensor, features, content_relu2_2: torch.Tensor,
               style: torch.Tensor) -> dict[str, torch.Tensor]:
    """The weighted terms train.py minimises (content, style, tv) and their total."""
    losses = {"content": args.content_weight * content_loss(features, content_relu2_2),
              "style": args.style_weight * style}
    if args.tv_weight:
        losses["tv"] = args.tv_weight * total_variation(stylised)
    losses["total"] = sum(losses.values())
    return losses


def add_style_run(args: argparse.Namespace, vgg: torch.nn.Module, device: torch.device):
    """(model, compute_losses, provenance, resume settings) of train.py --add-style NEW --init-from MODEL."""
    picture = require_file(args.add_style, "--add-style")
    image = image_io.load_rgb(picture, args.style_size)
    base = model_files.load_transformer(args.init_from, device, arbitrary=True)
    if isinstance(base, ArbitraryTransformerNet):
        start = predict(base, vgg, [image_io.load_rgb(picture)])  # the prediction: the starting point
        old_names: list[str] = []
        state = {k: v for k, v in base.state_dict().items() if not k.startswith("predictor.")}
        rows = dict(zip(base.norm_names, base.split(start), strict=True))
        new_rows = {name: rows[name] for name in base.norm_names}
    elif isinstance(base, ConditionalTransformerNet):
        old_names = list(base.style_names)
        state = base.state_dict()
        new_rows = {name: (state[f"{name}.weight"].mean(0, keepdim=True), state[f"{name}.bias"].mean(0, keepdim=True))
                    for name in _norm_names(base)}
    else:
        raise UserError(f"--init-from: {args.init_from} is a plain model with one fixed style; --add-style needs a "
                        "conditional model (train.py --conditional) or an arbitrary-style one (train.py --arbitrary)")
    new_name = style_names(None, [Path(n) for n in old_names] + [picture])[-1]
    model = ConditionalTransformerNet([*old_names, new_name], base.has_output_norm)
    for name, (scale, shift) in new_rows.items():
        old_scale, old_shift = state.get(f"{name}.weight"), state.get(f"{name}.bias")
        state[f"{name}.weight"] = scale.float() if old_scale is None else torch.cat([old_scale, scale.float()])
        state[f"{name}.bias"] = shift.float() if old_shift is None else torch.cat([old_shift, shift.float()])
    model.load_state_dict(state)
    freeze_all_but_norms(model)
    index, count = len(old_names), len(old_names) + 1
    with torch.no_grad():
        grams = [gram_matrix(f) for f in vgg(image_io.image_to_tensor(image).unsqueeze(0).to(device))]
    new_style = one_hot(torch.tensor([index], device=device), count)  # one row for every image, made once

    def compute_losses(network: torch.nn.Module, content: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        stylised = network(content, new_style)
        with torch.no_grad():
            content_relu2_2 = vgg(content, depth=2)[1]
        features = vgg(stylised)
        return loss_terms(args, stylised, features, content_relu2_2, style_loss(features, [grams], [1.0]))

    provenance = {"script": "train.py", "method": "add-style", "init_from": str(args.init_from),
                  "styles": [{"name": n} for n in old_names] + [{"path": str(picture), "name": new_name}],
                  "conditional": True, "content_weight": args.content_weight, "style_weight": args.style_weight,
                  "tv_weight": args.tv_weight, "seed": args.seed}
    settings = {"--add-style": training_checkpoint.paths_setting([picture]),
                "--init-from": training_checkpoint.paths_setting([Path(args.init_from)])}
    return model, compute_losses, provenance, settings


def _norm_names(model: ConditionalTransformerNet) -> list[str]:
    from style_transfer.conditional_net import ConditionalInstanceNorm2d

    return [name for name, module in model.named_modules() if isinstance(module, ConditionalInstanceNorm2d)]


def freeze_all_but_norms(model: ConditionalTransformerNet) -> None:
    """Only the norms' scales and shifts train. The old styles' rows get exactly zero gradient (their weight in
    every image's mix is 0), and Adam moves a parameter with zero gradient and zero state by exactly 0."""
    model.requires_grad_(False)
    for norm in model.norms:
        norm.weight.requires_grad_(True)
        norm.bias.requires_grad_(True)


def run(args: argparse.Namespace, vgg: torch.nn.Module, device: torch.device):
    """The model, loss function, provenance and resume settings of an --arbitrary or --add-style run."""
    check_flags(args)
    if args.arbitrary:
        args.savename = args.savename or "any-style"
        return arbitrary_run(args, vgg, device)
    args.savename = args.savename or f"{Path(args.init_from).stem}+{Path(args.add_style).stem}"
    return add_style_run(args, vgg, device)
