"""An arbitrary-style model's style loss on pictures it never saw, against dedicated models trained on each.

    python benchmarks/unseen_style_loss.py --arbitrary models/any-style.pth \
        --styles ../shared/data/style-images/candy.jpg,../shared/data/style-images/mosaic.jpg \
        --dedicated data/dedicated-unseen --datapath data/demo-crops

For every picture of --styles: the arbitrary model renders every photo of --datapath with its prediction for the
picture, and the dedicated model --dedicated/<picture stem>.pth (train.py on that picture alone, with the arbitrary
model's steps, crops, size, batch and learning rate: benchmarks/arbitrary.sh makes them) renders the same photos.
Both are scored with the quantities train.py minimises, over the same crops, in fp32: the weighted style loss
against the picture's Gram matrices at --style-size (the dedicated model's own target: the whole picture, where the
arbitrary model trained on random crops) and the weighted content loss. The ratio arbitrary / dedicated is the
figure of issue 23 (target <= 1.5).

With --added DIR, a third model per picture: --added/<picture stem>.pth, the arbitrary model with the picture added
by train.py --add-style (its norms trained from the prediction, the convolutions frozen; benchmarks/arbitrary.sh
makes them), scored in its last style. It tells where the gap lies: in the predictor (the added model comes close
to the dedicated one) or in the shared convolutions (it does not). A second table splits each model's style loss by
layer of the loss network, with the offline one the first layer's colour code (the colour distribution: the block
of its Gram matrix between the colour channels) apart from the rest of that layer (its filters and their
correlations with the colours): it tells which part of a style the arbitrary model misses.
"""

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent  # the repository root
sys.path.insert(0, str(ROOT))  # the suite's modules live at the top level

import utils
from style_transfer import image_io, loss_network, model_files
from style_transfer.arbitrary_net import ArbitraryTransformerNet, check_loss_network, predict
from style_transfer.conditional_net import ConditionalTransformerNet, one_hot
from style_transfer.training_data import ImageFolderDataset
from vgg import VggOutputs, content_loss, gram_matrix, style_loss

BATCH = 8
COLOUR_CODE = "colour code"  # the name of the first part with the offline loss network


def style_parts(features, grams: list[torch.Tensor], colour_channels: int) -> list[torch.Tensor]:
    """Each layer's term of vgg.style_loss (they sum to it), the first layer's split in two when colour_channels > 0:
    its colour code (the first colour_channels rows and columns of its Gram matrix: with the offline loss network,
    the colour distribution) and the rest."""
    parts = [style_loss([output.float()], [[target]], [1.0]) for output, target in zip(features, grams, strict=True)]
    if colour_channels:  # the colour block's share of the first layer's mean squared error
        output_gram = gram_matrix(features[0].float())
        block = (output_gram - grams[0])[:, :colour_channels, :colour_channels]
        colour = (block ** 2).sum() / output_gram.numel()
        parts[:1] = [colour, parts[0] - colour]
    return parts


def part_names(colour_channels: int) -> list[str]:
    """The names of style_parts' parts, in its order."""
    layers = list(VggOutputs._fields)
    return [COLOUR_CODE, f"{layers[0]} rest", *layers[1:]] if colour_channels else layers


@torch.no_grad()
def losses(render, vgg: torch.nn.Module, photos: ImageFolderDataset, grams: list[torch.Tensor],
           weights: dict, colour_channels: int) -> tuple[float, float, list[float]]:
    """(weighted style loss, weighted content loss, the style loss's parts (style_parts)), each the mean over the
    photos of --datapath."""
    parts_total, content_total = torch.zeros(len(part_names(colour_channels)), dtype=torch.float64), 0.0
    for start in range(0, len(photos), BATCH):
        content = torch.stack([photos[i] for i in range(start, min(start + BATCH, len(photos)))])
        features = vgg(render(content))
        parts_total += len(content) * torch.stack(style_parts(features, grams, colour_channels)).double()
        content_total += len(content) * content_loss(features, vgg(content, depth=2)[1]).item()
    parts = [weights["style_weight"] * float(part) / len(photos) for part in parts_total]
    return sum(parts), weights["content_weight"] * content_total / len(photos), parts


def added_row(path: Path, vgg: torch.nn.Module, photos: ImageFolderDataset, grams: list[torch.Tensor],
              weights: dict, colour_channels: int) -> dict:
    """The losses of an --add-style model in its last style (the added one), and its steps."""
    added = model_files.load_transformer(utils.require_file(path, "--added"))
    provenance = model_files.read_provenance(path) or {}
    if not isinstance(added, ConditionalTransformerNet) or provenance.get("method") != "add-style":
        raise utils.UserError(f"--added: {path} is not a model made by train.py --add-style")
    mix = one_hot(torch.tensor([len(added.style_names) - 1]), len(added.style_names))  # the added style is last
    style, content, parts = losses(lambda x: added(x, mix), vgg, photos, grams, weights, colour_channels)
    return {"added_style_loss": style, "added_content_loss": content, "added_steps": provenance.get("steps"),
            "added_style_parts": dict(zip(part_names(colour_channels), parts, strict=True))}


def geometric_mean(values: list[float]) -> float:
    """The mean of ratios: 2x and 0.5x average to 1x."""
    return float(np.exp(np.mean(np.log(values))))


def print_parts(rows: list[dict], names: list[str], added: bool) -> dict[str, dict[str, float]]:
    """The table of where each model's style loss lies, each part's ratio to the dedicated model's (geometric mean
    over the pictures) for the arbitrary (and the added) model, which it returns, and the first part's share."""
    models = ["arbitrary", "dedicated", "added"] if added else ["arbitrary", "dedicated"]
    print("where the style loss lies (weighted, by part of the loss network):")
    print("| picture | model | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for row in rows:
        for model in models:
            print(f"| {row['style']} | {model} | "
                  + " | ".join(f"{row[f'{model}_style_parts'][name]:.1f}" for name in names) + " |")
    ratios = {}
    for model in [m for m in models if m != "dedicated"]:
        ratios[model] = {name: geometric_mean([row[f"{model}_style_parts"][name] / row["dedicated_style_parts"][name]
                                               for row in rows]) for name in names}
        print(f"ratio by part to the dedicated model's, geometric mean, {model}: "
              + ", ".join(f"{name} {ratio:.2f}" for name, ratio in ratios[model].items()))
    shares = {model: [row[f"{model}_style_parts"][names[0]] / row[f"{model}_style_loss"] for row in rows]
              for model in models}
    print(f"{names[0]}'s share of the style loss: "
          + ", ".join(f"{model} {min(s):.0%} to {max(s):.0%}" for model, s in shares.items()))
    return ratios


@torch.no_grad()  # and not torch.set_grad_enabled(False): main() also runs inside tests
def main(argv: list[str] | None = None) -> None:
    parser = utils.ArgumentParser(description=__doc__)
    parser.add_argument("--arbitrary", required=True, metavar="MODEL", help="the arbitrary-style model")
    parser.add_argument("--styles", required=True, metavar="A.jpg,B.jpg",
                        help="the pictures to measure, separated by commas (pictures the model never saw)")
    parser.add_argument("--dedicated", required=True, metavar="DIR",
                        help="folder holding <picture stem>.pth, a dedicated model for each picture")
    parser.add_argument("--added", default=None, metavar="DIR",
                        help="folder holding <picture stem>.pth, the arbitrary model with that picture added by "
                             "train.py --add-style, scored as a third column (default: none)")
    parser.add_argument("--datapath", default=str(ROOT / "data/demo-crops"),
                        help="the photos both are scored on (default: %(default)s)")
    parser.add_argument("--image-size", type=utils.positive_int, default=128,
                        help="each photo's centre crop, as train.py --image-size (default: %(default)s)")
    parser.add_argument("--style-size", type=utils.positive_int, default=256,
                        help="each picture's shorter side for its Gram matrices, as train.py --style-size "
                             "(default: %(default)s)")
    parser.add_argument("--vgg-weights", default="offline",
                        help="the loss network both were trained with (default: %(default)s)")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="also write every figure, with the command, to this JSON file (default: none)")
    args = parser.parse_args(argv)
    vgg = loss_network.load_loss_network(args.vgg_weights).eval()
    arbitrary = model_files.load_transformer(args.arbitrary, arbitrary=True)
    if not isinstance(arbitrary, ArbitraryTransformerNet):
        raise utils.UserError(f"--arbitrary: {args.arbitrary} is not an arbitrary-style model")
    check_loss_network(arbitrary, vgg, args.vgg_weights, args.arbitrary)
    provenance = model_files.read_provenance(args.arbitrary)
    if provenance is None:  # it holds the loss weights both models are scored with
        raise utils.UserError(f"--arbitrary: no provenance JSON beside {args.arbitrary} (train.py writes one)")
    photos = ImageFolderDataset(args.datapath, args.image_size)
    colour_channels = loss_network.COLOUR_CHANNELS if args.vgg_weights == loss_network.OFFLINE else 0
    names = part_names(colour_channels)
    rows = []
    for picture in [utils.require_file(p, "--styles") for p in args.styles.split(",") if p]:
        dedicated_path = utils.require_file(Path(args.dedicated) / f"{picture.stem}.pth", "--dedicated")
        dedicated = model_files.load_transformer(dedicated_path)
        style = image_io.image_to_tensor(image_io.load_rgb(picture, args.style_size)).unsqueeze(0)
        grams = [gram_matrix(f.float()) for f in vgg(style)]
        params = predict(arbitrary, vgg, [image_io.load_rgb(picture)])
        arbitrary_style, arbitrary_content, arbitrary_parts = losses(
            lambda x, p=params: arbitrary(x, style_params=p), vgg, photos, grams, provenance, colour_channels)
        dedicated_style, dedicated_content, dedicated_parts = losses(dedicated, vgg, photos, grams, provenance,
                                                                     colour_channels)
        dedicated_steps = (model_files.read_provenance(dedicated_path) or {}).get("steps")
        row = {"style": picture.name, "arbitrary_style_loss": arbitrary_style,
               "dedicated_style_loss": dedicated_style, "ratio": arbitrary_style / dedicated_style,
               "arbitrary_content_loss": arbitrary_content, "dedicated_content_loss": dedicated_content,
               "dedicated_steps": dedicated_steps,
               "arbitrary_style_parts": dict(zip(names, arbitrary_parts, strict=True)),
               "dedicated_style_parts": dict(zip(names, dedicated_parts, strict=True))}
        if args.added:
            row.update(added_row(Path(args.added) / f"{picture.stem}.pth", vgg, photos, grams, provenance,
                                 colour_channels))
            row["added_ratio"] = row["added_style_loss"] / dedicated_style
        rows.append(row)
    print(f"{len(photos)} photos of {args.datapath} at {args.image_size} px; arbitrary model "
          f"{args.arbitrary} ({provenance.get('steps')} steps); weighted losses as train.py's")
    added = " style loss, --add-style | its ratio |" if args.added else ""
    print("| picture | style loss, arbitrary | style loss, dedicated | ratio | content loss, arbitrary | "
          f"content loss, dedicated | dedicated steps |{added}")
    print("|---|---|---|---|---|---|---|" + "---|---|" * bool(args.added))
    for row in rows:
        added = f" {row['added_style_loss']:.1f} ({row['added_steps']} steps) | {row['added_ratio']:.2f} |" \
            if args.added else ""
        print(f"| {row['style']} | {row['arbitrary_style_loss']:.1f} | {row['dedicated_style_loss']:.1f} | "
              f"{row['ratio']:.2f} | {row['arbitrary_content_loss']:.1f} | {row['dedicated_content_loss']:.1f} | "
              f"{row['dedicated_steps']} |{added}")
    geometric = geometric_mean([row["ratio"] for row in rows])
    print(f"ratio: geometric mean {geometric:.2f}, largest {max(row['ratio'] for row in rows):.2f}")
    added_geometric = geometric_mean([row["added_ratio"] for row in rows]) if args.added else None
    if args.added:
        print(f"--add-style ratio: geometric mean {added_geometric:.2f}")
    part_ratios = print_parts(rows, names, bool(args.added))
    without_colour = None
    if colour_channels:
        without_colour = geometric_mean([
            (row["arbitrary_style_loss"] - row["arbitrary_style_parts"][COLOUR_CODE])
            / (row["dedicated_style_loss"] - row["dedicated_style_parts"][COLOUR_CODE]) for row in rows])
        print(f"ratio of the style loss outside the colour code: geometric mean {without_colour:.2f}")
    if args.json:
        utils.save_json({"command": model_files.command_line("benchmarks/unseen_style_loss.py", argv),
                         "machine": model_files.machine_description(torch.device("cpu")),
                         "arbitrary_steps": provenance.get("steps"), "photos": len(photos),
                         "geometric_mean_ratio": geometric, "added_geometric_mean_ratio": added_geometric,
                         "part_geometric_mean_ratios": part_ratios,
                         "geometric_mean_ratio_without_colour_code": without_colour, "rows": rows}, args.json)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    utils.run_main(main)
