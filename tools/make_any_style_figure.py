"""The figure of the arbitrary-style model: the bundled photos in pictures it never saw in training.

    python tools/make_any_style_figure.py      # writes images/figures/any-style.jpg

The pictures are the two bundled style images and four of tools/make_style_set.py drawn with another seed than
the model's training set (seed 1; the training set is seed 0): none was among the model's training styles.
"""

import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent  # the repository root
sys.path.insert(0, str(ROOT))  # the suite's modules live at the top level

from make_figures import CONTENT, STYLES, TILE, column, row, save, tile  # noqa: E402
from make_style_images import save_image  # noqa: E402
from make_style_set import style_picture  # noqa: E402

import utils  # noqa: E402
from style_transfer import image_io, model_files, rendering  # noqa: E402
from style_transfer.arbitrary_net import check_loss_network, predict, to_conditional  # noqa: E402
from style_transfer.loss_network import load_loss_network  # noqa: E402

MODEL = ROOT / "models/any-style.pth"
UNSEEN_SEED = 1  # the bundled model's training set is make_style_set.py's seed 0
UNSEEN = (0, 1, 3, 4)  # pictures of that seed: panes, strokes, dots, bands


def main(argv: list[str] | None = None) -> None:
    parser = utils.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=str(MODEL), help="the arbitrary-style model (default: %(default)s)")
    parser.add_argument("--output", default=str(ROOT / "images/figures/any-style.jpg"),
                        help="the figure (default: this repository's images/figures/any-style.jpg)")
    args = parser.parse_args(argv)
    model = model_files.load_transformer(utils.require_file(args.model, "--model"), arbitrary=True)
    with tempfile.TemporaryDirectory() as folder:
        pictures = [STYLES / "stained-glass.png", STYLES / "brush-strokes.jpg"]
        for index in UNSEEN:
            path = Path(folder) / f"unseen-{index}.png"
            save_image(style_picture(192, UNSEEN_SEED, index), path)
            pictures.append(path)
        images = [image_io.load_rgb(p) for p in pictures]
        loss_network = load_loss_network(model.loss_network)
        check_loss_network(model, loss_network, model.loss_network, args.model)
        network = to_conditional(model, predict(model, loss_network, images), [p.stem for p in pictures])
        blank = Image.new("RGB", (TILE, TILE), "white")
        named = zip(images, pictures, strict=True)
        rows = [row([tile(blank, "style pictures:")] + [tile(image, path.name) for image, path in named])]
        for photo in sorted(CONTENT.glob("*.jpg")):
            content = image_io.load_rgb(photo, TILE)
            tiles = [tile(content, photo.name)]
            for index in range(len(pictures)):
                network.set_style_mix([float(i == index) for i in range(len(pictures))])
                batch = image_io.image_to_tensor(content).unsqueeze(0)
                tiles.append(tile(image_io.tensor_to_image(rendering.stylize(network, batch)[0]), pictures[index].stem))
            rows.append(row(tiles))
    save(column(rows), Path(args.output))


if __name__ == "__main__":
    utils.run_main(main)
