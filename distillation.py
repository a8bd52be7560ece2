"""Merge N trained style networks into one student by knowledge distillation (Hinton et al. 2015).

The student regresses onto the frozen teachers' outputs in VGG16 feature space (relu1_2 ... relu4_3),
optionally also in pixel space:

    loss = Σ_t w_t Σ_layers MSE(VGG(student(x)), VGG(teacher_t(x)))
         + pixel_weight Σ_t w_t MSE(student(x), teacher_t(x))

    python distillation.py --datapath coco/ --teachers mosaic.pth,candy.pth --teacher-weights 0.5,0.5

With --conditional the student keeps the teachers apart instead: one conditional model (Dumoulin et al. 2017)
whose style i learns teacher i, to be chosen or mixed when rendering (render_image.py --style, --style-mix).
Each image of a step is then distilled from one teacher, in turn, with the loss above for that teacher alone:

    python distillation.py --datapath coco/ --teachers mosaic.pth,candy.pth --conditional
"""

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

import utils
from style_transfer import model_files, training, training_checkpoint, training_data
from style_transfer.conditional_net import (
    STYLE_NAMES_HELP,
    ConditionalTransformerNet,
    batch_positions,
    conditional_state,
    one_hot,
    style_names,
    styles_for_step,
)
from style_transfer.loss_network import load_loss_network
from transformer_net import TransformerNet


def build_parser() -> argparse.ArgumentParser:
    parser = utils.ArgumentParser(description=__doc__)
    parser.add_argument("--teachers", default=None, metavar="A,B,...",
                        help="trained models to merge, separated by commas (any layout render_image.py loads; a "
                             "conditional teacher contributes its first style)")
    parser.add_argument("--model1", default=None, help="first teacher (the original flag; same as --teachers A,B)")
    parser.add_argument("--model2", default=None, help="second teacher (the original flag)")
    parser.add_argument("--teacher-weights", default=None, metavar="W1,W2,...",
                        help="one non-negative weight per teacher, normalised to sum 1 (default: equal)")
    parser.add_argument("--pixel-weight", type=utils.non_negative_float, default=0.0,
                        help="weight of the extra pixel-space MSE to the teachers (default: %(default)s)")
    parser.add_argument("--init-from", default=None, metavar="MODEL",
                        help="start the student from this model, e.g. one teacher; with --conditional a plain "
                             "model starts every style (default: random init)")
    parser.add_argument("--conditional", action="store_true",
                        help="make one conditional model whose style i learns teacher i, chosen or mixed when "
                             "rendering (default: off, one fixed blend of the teachers)")
    parser.add_argument("--style-names", default=None, metavar="A,B,...", help=STYLE_NAMES_HELP)
    training.add_training_args(parser)
    return parser


def teacher_paths(args: argparse.Namespace) -> list[Path]:
    legacy = [p for p in (args.model1, args.model2) if p]
    if args.teachers and legacy:
        raise utils.UserError("give either --teachers or --model1/--model2, not both")
    if legacy and not (args.model1 and args.model2):
        raise utils.UserError("--model1 and --model2 go together (or use --teachers A,B,...)")
    paths = legacy or [p for p in (args.teachers or "").split(",") if p]
    if not paths:
        raise utils.UserError("name the models to distil with --teachers A,B,... (or --model1 and --model2)")
    return [utils.require_file(p, "--teachers") for p in paths]


def initial_state(path: str, conditional_names: list[str] | None) -> dict:
    """The weights of --init-from for the student: a plain model starts every style of a conditional one."""
    initial = model_files.load_transformer(path)
    state = initial.state_dict()
    if conditional_names is None:
        if isinstance(initial, ConditionalTransformerNet):
            raise utils.UserError(f"--init-from: {path} is a conditional model; start a plain student from a "
                                  "plain model, or add --conditional")
        return state
    if not isinstance(initial, ConditionalTransformerNet):
        return conditional_state(state, len(conditional_names))
    if initial.style_count != len(conditional_names):
        raise utils.UserError(f"--init-from: {path} has {initial.style_count} styles, the student "
                              f"{len(conditional_names)} (one per teacher)")
    return state


@torch.no_grad()
def teacher_targets(teachers: list[torch.nn.Module], active: list[tuple[torch.nn.Module, float]],
                    content: torch.Tensor, positions: range | None) -> list[tuple[torch.Tensor, float]]:
    """(a teacher's rendering of the batch, its weight) per `active` teacher; with --conditional (`positions`, the
    batch's images' batch_positions, given) one rendering in which every image comes from its own teacher
    (round robin: image j from teacher (positions[j] mod N)), weight 1. A teacher's images are then every N-th
    one, a strided slice: picked without a host sync (selecting them by a mask would wait for the device)."""
    if positions is None:
        return [(teacher(content), weight) for teacher, weight in active]
    target = torch.empty_like(content)
    for index, teacher in enumerate(teachers):
        first = (index - positions.start) % len(teachers)
        if first < len(content):
            target[first::len(teachers)] = teacher(content[first::len(teachers)]).to(target.dtype)
    return [(target, 1.0)]


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    training.require_writable_folders(args)
    paths = teacher_paths(args)
    if args.conditional and args.teacher_weights is not None:
        raise utils.UserError("--teacher-weights blends the teachers; with --conditional each teacher becomes a "
                              "style of its own, mixed when rendering (--style-mix)")
    if args.style_names is not None and not args.conditional:
        raise utils.UserError("--style-names names the styles of a --conditional model")
    teacher_weights = utils.parse_weights(args.teacher_weights, len(paths), "--teacher-weights")
    names = style_names(args.style_names, paths) if args.conditional else None
    device = training.training_device(args.device)
    teachers = [model_files.load_transformer(p, device).requires_grad_(False) for p in paths]
    initial = initial_state(args.init_from, names) if args.init_from else None
    args.savename = args.savename or "distilled_" + "+".join(p.stem for p in paths)
    if not Path(args.savename).suffix:
        args.savename += ".pth"
    dataset = training_data.ImageFolderDataset(args.datapath, args.image_size)
    vgg = load_loss_network(args.vgg_weights).to(device)

    torch.manual_seed(args.seed)
    if initial is None:
        model = ConditionalTransformerNet(names) if args.conditional else TransformerNet()
    else:  # the network the weights are of: plain or conditional, with an output norm if they have one
        model = model_files.network_for_state(initial, names)
        model.load_state_dict(initial)
    active = [(teacher, weight) for teacher, weight in zip(teachers, teacher_weights, strict=True) if weight > 0]

    def compute_losses(network: torch.nn.Module, content: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        positions = None
        if args.conditional:  # every image from its own teacher
            positions = batch_positions(step, args.batch_size, len(dataset))
            styles = styles_for_step(step, args.batch_size, len(teachers), len(dataset), content.device)
            stylised = network(content, one_hot(styles, len(teachers)))
        else:
            stylised = network(content)
        stylised_features = vgg(stylised)
        feature_loss = pixel_loss = stylised.new_zeros(())
        for target, weight in teacher_targets(teachers, active, content, positions):
            with torch.no_grad():
                target_features = vgg(target)
            for student_layer, teacher_layer in zip(stylised_features, target_features, strict=True):
                feature_loss = feature_loss + weight * F.mse_loss(student_layer, teacher_layer)
            if args.pixel_weight:
                pixel_loss = pixel_loss + weight * F.mse_loss(stylised, target)
        losses = {"feature": feature_loss}
        if args.pixel_weight:
            losses["pixel"] = args.pixel_weight * pixel_loss
        losses["total"] = sum(losses.values())
        return losses

    provenance = {
        "script": "distillation.py", "method": "distillation",
        "command": model_files.command_line("distillation.py", argv),
        "teachers": [{"path": str(p), "weight": w, "provenance": model_files.read_provenance(p)}
                     for p, w in zip(paths, teacher_weights, strict=True)],
        "pixel_weight": args.pixel_weight, "init_from": args.init_from, "seed": args.seed,
        "conditional": args.conditional, "style_names": names,
    }
    resume_settings = {"--teachers": training_checkpoint.paths_setting(paths),
                       "--teacher-weights": training_checkpoint.weights_setting(teacher_weights),
                       "--pixel-weight": training_checkpoint.number_setting(args.pixel_weight)}
    model_path = training.fit(model, compute_losses, dataset, args, device, provenance, resume_settings)
    print(f"model saved to {model_path}")


if __name__ == "__main__":
    utils.run_main(main)
