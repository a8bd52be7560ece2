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
to the dedicated one) or in the shared convolutions (it does not).
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
from vgg import content_loss, gram_matrix, style_loss

BATCH = 8


@torch.no_grad()
def losses(render, vgg: torch.nn.Module, photos: ImageFolderDataset, grams: list[torch.Tensor],
           weights: dict) -> tuple[float, float]:
    """(weighted style loss, weighted content loss), each the mean over the photos of --datapath."""
    style_total, content_total = 0.0, 0.0
    for start in range(0, len(photos), BATCH):
        content = torch.stack([photos[i] for i in range(start, min(start + BATCH, len(photos)))])
        features = vgg(render(content))
        style_total += len(content) * style_loss([f.float() for f in features], [grams], [1.0]).item()
        content_total += len(content) * content_loss(features, vgg(content, depth=2)[1]).item()
    return (weights["style_weight"] * style_total / len(photos),
            weights["content_weight"] * content_total / len(photos))


def added_row(path: Path, vgg: torch.nn.Module, photos: ImageFolderDataset, grams: list[torch.Tensor],
              weights: dict) -> dict:
    """The losses of an --add-style model in its last style (the added one), and its steps."""
    added = model_files.load_transformer(utils.require_file(path, "--added"))
    provenance = model_files.read_provenance(path) or {}
    if not isinstance(added, ConditionalTransformerNet) or provenance.get("method") != "add-style":
        raise utils.UserError(f"--added: {path} is not a model made by train.py --add-style")
    mix = one_hot(torch.tensor([len(added.style_names) - 1]), len(added.style_names))  # the added style is last
    style, content = losses(lambda x: added(x, mix), vgg, photos, grams, weights)
    steps = provenance.get("steps")
    return {"added_style_loss": style, "added_content_loss": content, "added_steps": steps}


def geometric_mean(values: list[float]) -> float:
    """The mean of ratios: 2x and 0.5x average to 1x."""
    return float(np.exp(np.mean(np.log(values))))


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
    torch.set_grad_enabled(False)
    vgg = loss_network.load_loss_network(args.vgg_weights).eval()
    arbitrary = model_files.load_transformer(args.arbitrary, arbitrary=True)
    if not isinstance(arbitrary, ArbitraryTransformerNet):
        raise utils.UserError(f"--arbitrary: {args.arbitrary} is not an arbitrary-style model")
    check_loss_network(arbitrary, vgg, args.vgg_weights, args.arbitrary)
    provenance = model_files.read_provenance(args.arbitrary)
    if provenance is None:  # it holds the loss weights both models are scored with
        raise utils.UserError(f"--arbitrary: no provenance JSON beside {args.arbitrary} (train.py writes one)")
    photos = ImageFolderDataset(args.datapath, args.image_size)
    rows = []
    for picture in [utils.require_file(p, "--styles") for p in args.styles.split(",") if p]:
        dedicated_path = utils.require_file(Path(args.dedicated) / f"{picture.stem}.pth", "--dedicated")
        dedicated = model_files.load_transformer(dedicated_path)
        style = image_io.image_to_tensor(image_io.load_rgb(picture, args.style_size)).unsqueeze(0)
        grams = [gram_matrix(f.float()) for f in vgg(style)]
        params = predict(arbitrary, vgg, [image_io.load_rgb(picture)])
        arbitrary_style, arbitrary_content = losses(lambda x, p=params: arbitrary(x, style_params=p), vgg,
                                                    photos, grams, provenance)
        dedicated_style, dedicated_content = losses(dedicated, vgg, photos, grams, provenance)
        dedicated_steps = (model_files.read_provenance(dedicated_path) or {}).get("steps")
        row = {"style": picture.name, "arbitrary_style_loss": arbitrary_style,
               "dedicated_style_loss": dedicated_style, "ratio": arbitrary_style / dedicated_style,
               "arbitrary_content_loss": arbitrary_content, "dedicated_content_loss": dedicated_content,
               "dedicated_steps": dedicated_steps}
        if args.added:
            row.update(added_row(Path(args.added) / f"{picture.stem}.pth", vgg, photos, grams, provenance))
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
    if args.json:
        utils.save_json({"command": model_files.command_line("benchmarks/unseen_style_loss.py", argv),
                         "machine": model_files.machine_description(torch.device("cpu")),
                         "arbitrary_steps": provenance.get("steps"), "photos": len(photos),
                         "geometric_mean_ratio": geometric, "added_geometric_mean_ratio": added_geometric,
                         "rows": rows}, args.json)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    utils.run_main(main)
