"""Merge N trained style networks into one student by knowledge distillation (Hinton et al. 2015).

The student regresses onto the frozen teachers' outputs in VGG16 feature space (relu1_2 ... relu4_3),
optionally also in pixel space:

    loss = Σ_t w_t Σ_layers MSE(VGG(student(x)), VGG(teacher_t(x)))
         + pixel_weight Σ_t w_t MSE(student(x), teacher_t(x))

    python distillation.py --datapath coco/ --teachers mosaic.pth,candy.pth --teacher-weights 0.5,0.5
"""

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

import model_files
import training
import training_data
import utils
from loss_network import load_loss_network
from transformer_net import TransformerNet


def build_parser() -> argparse.ArgumentParser:
    parser = utils.ArgumentParser(description=__doc__)
    parser.add_argument("--teachers", default=None, metavar="A,B,...",
                        help="trained models to merge, separated by commas (any layout render_image.py loads)")
    parser.add_argument("--model1", default=None, help="first teacher (the original flag; same as --teachers A,B)")
    parser.add_argument("--model2", default=None, help="second teacher (the original flag)")
    parser.add_argument("--teacher-weights", default=None, metavar="W1,W2,...",
                        help="one non-negative weight per teacher, normalised to sum 1 (default: equal)")
    parser.add_argument("--pixel-weight", type=float, default=0.0,
                        help="weight of the extra pixel-space MSE to the teachers (default: %(default)s)")
    parser.add_argument("--init-from", default=None, metavar="MODEL",
                        help="start the student from this model, e.g. one teacher (default: random init)")
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


def read_provenance(model_path: Path) -> dict | None:
    path = model_files.provenance_path(model_path)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    training.require_writable_folders(args)
    paths = teacher_paths(args)
    teacher_weights = utils.parse_weights(args.teacher_weights, len(paths), "--teacher-weights")
    device = training.training_device(args.device)
    teachers = [model_files.load_transformer(p, device).requires_grad_(False) for p in paths]
    initial = model_files.load_transformer(args.init_from) if args.init_from else None
    args.savename = args.savename or "distilled_" + "+".join(p.stem for p in paths)
    if not Path(args.savename).suffix:
        args.savename += ".pth"
    dataset = training_data.ImageFolderDataset(args.datapath, args.image_size)
    vgg = load_loss_network(args.vgg_weights).to(device)

    torch.manual_seed(args.seed)
    model = TransformerNet()
    if initial is not None:
        model.load_state_dict(initial.state_dict())
    active = [(teacher, weight) for teacher, weight in zip(teachers, teacher_weights, strict=True) if weight > 0]

    def compute_losses(network: torch.nn.Module, content: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        stylised = network(content)
        stylised_features = vgg(stylised)
        feature_loss = pixel_loss = stylised.new_zeros(())
        for teacher, weight in active:
            with torch.no_grad():
                target = teacher(content)
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
        "teachers": [{"path": str(p), "weight": w, "provenance": read_provenance(p)}
                     for p, w in zip(paths, teacher_weights, strict=True)],
        "pixel_weight": args.pixel_weight, "init_from": args.init_from, "seed": args.seed,
    }
    model_path = training.fit(model, compute_losses, dataset, args, device, provenance)
    print(f"model saved to {model_path}")


if __name__ == "__main__":
    utils.run_main(main)
