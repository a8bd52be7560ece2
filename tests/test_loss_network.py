"""The offline loss network (`--vgg-weights offline`) and the style measurement script built on it."""

import json

import pytest
import style_metrics
import torch
from PIL import Image

import distillation
import train
import vgg
from conftest import load_state, save_random_conditional_model, save_random_model, train_args, write_noise_image
from style_transfer import loss_network, model_files


@pytest.fixture(scope="module")
def network():
    return loss_network.OfflineLossNetwork()


def colour_blocks(height: int = 32, width: int = 48, seed: int = 0) -> torch.Tensor:
    """A 1x3xHxW image in 0-255 made of 4x4 blocks of a few saturated colours."""
    palette = torch.tensor([[230.0, 40, 40], [40, 80, 230], [240, 200, 30], [30, 160, 60], [40, 40, 40]])
    generator = torch.Generator().manual_seed(seed)
    index = torch.randint(len(palette), (height // 4, width // 4), generator=generator)
    blocks = palette[index].permute(2, 0, 1).unsqueeze(0)
    return blocks.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)


def test_it_is_seeded_deterministic_and_frozen(network):
    again = loss_network.OfflineLossNetwork()
    for (name, a), (_, b) in zip(network.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert not torch.equal(loss_network.OfflineLossNetwork(seed=1).content_filters, network.content_filters)
    assert not any(p.requires_grad for p in network.parameters())
    network.train()
    assert not network.training
    images = colour_blocks()
    for a, b in zip(network(images), again(images), strict=True):
        assert torch.equal(a, b)


def test_its_outputs_fill_the_vgg16_slots_the_losses_use(network):
    images = torch.rand(2, 3, 32, 48) * 255
    before = images.clone()
    features = network(images)
    assert isinstance(features, vgg.VggOutputs)
    assert [f.shape[-2:] for f in features] == [(32, 48), (16, 24), (8, 12), (4, 6)]
    assert torch.equal(images, before)
    torch.testing.assert_close(network(images, depth=2)[1], features.relu2_2)
    tiny = network(torch.rand(1, 3, 8, 8) * 255)  # smaller than the coarsest pooling: still one pixel a slot
    assert all(f.shape[-1] >= 1 for f in tiny)


def test_the_content_features_leave_colour_free(network):
    """The content loss sees the photo's luminance edges only: a brighter copy, or one whose colours change
    while its luminance stays, has the same content features."""
    image = colour_blocks()
    content = network(image, depth=2)[1]
    torch.testing.assert_close(network(image + 10, depth=2)[1], content)
    luma = torch.tensor(loss_network._LUMA).view(1, 3, 1, 1)
    gray = (image * luma).sum(dim=1, keepdim=True).expand_as(image)  # the same luminance, no colour at all
    torch.testing.assert_close(network(gray, depth=2)[1], content, atol=1e-5, rtol=1e-4)


def test_the_colour_statistics_see_the_palette_not_where_it_is(network):
    """Shuffling the pixels keeps the colour slot's Gram matrix; other colours change it a lot."""
    style = colour_blocks()
    shuffled = style.flatten(2)[..., torch.randperm(style[0, 0].numel())].view_as(style)
    gray = torch.full_like(style, 128.0)

    def colour_gram(image):
        colour_channels = loss_network.COLOUR_DIRECTIONS * loss_network.COLOUR_LEVELS + 1
        return vgg.gram_matrix(network(image, depth=1)[0][:, :colour_channels])

    target = colour_gram(style)
    torch.testing.assert_close(colour_gram(shuffled), target, atol=1e-6, rtol=1e-5)
    assert (colour_gram(gray) - target).norm() > 0.2 * target.norm()


def test_train_and_distillation_use_it_and_record_it(tmp_path, dataset_dir, style_files, capsys):
    train.main(train_args(dataset_dir, tmp_path, style_files[:1], "--vgg-weights", "offline", "--max-steps", "2",
                          "--savename", "offline.pth"))
    assert "warning: --vgg-weights offline:" in capsys.readouterr().err
    model = tmp_path / "models/offline.pth"
    assert json.loads(model.with_suffix(".json").read_text())["vgg_weights"] == "offline"
    assert set(load_state(model)) == set(load_state(save_random_model(tmp_path / "random.pth")))
    distillation.main(["--datapath", str(dataset_dir), "--teachers", str(model), "--vgg-weights", "offline",
                       "--image-size", "32", "--batch-size", "2", "--max-steps", "1", "--device", "cpu",
                       "--save-dir", str(tmp_path / "student"), "--log-dir", str(tmp_path / "logs"),
                       "--checkpoint-dir", str(tmp_path / "checkpoints")])
    assert json.loads(next((tmp_path / "student").glob("*.json")).read_text())["vgg_weights"] == "offline"


def test_the_colour_measures_of_identical_and_different_images():
    style = Image.fromarray(colour_blocks()[0].permute(1, 2, 0).byte().numpy())
    gray = Image.new("RGB", style.size, (128, 128, 128))
    a, g = style_metrics.pixels(style), style_metrics.pixels(gray)
    qa, qg = style_metrics.projected_quantiles(a), style_metrics.projected_quantiles(g)
    assert style_metrics.sliced_wasserstein(qa, qa) == 0
    assert style_metrics.sliced_wasserstein(qg, qa) > 0.1
    assert style_metrics.histogram_intersection(a, a) == pytest.approx(1)
    assert style_metrics.histogram_intersection(g, a) == 0  # mid-gray shares no 6x6x6 bin with the blocks
    assert style_metrics.edge_correlation(style, style) == pytest.approx(1)


def test_style_metrics_measures_every_photo_in_every_style(tmp_path, capsys):
    photos = tmp_path / "photos"
    for i in range(2):
        write_noise_image(photos / f"photo{i}.jpg", 36, 52, seed=i)
    styles = [write_noise_image(tmp_path / f"style{i}.png", 40, 40, seed=10 + i) for i in range(2)]
    models = [save_random_model(tmp_path / f"m{i}.pth", seed=i) for i in range(2)]
    record = tmp_path / "record.json"
    style_metrics.main(["--models", ",".join(map(str, models)), "--styles", ",".join(map(str, styles)),
                        "--photos", str(photos), "--max-size", "32", "--json", str(record)])
    table = capsys.readouterr().out
    for i in range(2):
        assert f"| m0.pth | photo{i}.jpg | style0.png |" in table and f"| m1.pth | photo{i}.jpg | style1.png |" in table
    assert "| **m0.pth** | **mean** |" in table and "| **m1.pth** | **mean** |" in table
    rows = json.loads(record.read_text())["rows"]
    assert len(rows) == 4 and all(0 <= row["hist_result"] <= 1 for row in rows)
    assert json.loads(record.read_text())["command"].startswith("python benchmarks/style_metrics.py --models ")


def test_style_metrics_measures_a_conditional_model_in_each_of_its_styles(tmp_path, capsys):
    photos = tmp_path / "photos"
    write_noise_image(photos / "photo.jpg", 36, 52, seed=0)
    styles = [write_noise_image(tmp_path / f"style{i}.png", 40, 40, seed=10 + i) for i in range(2)]
    model = save_random_conditional_model(tmp_path / "both.pth")
    model_files.provenance_path(model).write_text(json.dumps(
        {"conditional": True, "styles": [{"path": str(p), "name": p.stem} for p in styles]}))
    record = tmp_path / "record.json"
    style_metrics.main(["--models", str(model), "--photos", str(photos), "--max-size", "32", "--keep",
                        str(tmp_path / "kept"), "--json", str(record)])
    table = capsys.readouterr().out
    assert "| both.pth | photo.jpg | style0.png |" in table and "| both.pth | photo.jpg | style1.png |" in table
    rows = json.loads(record.read_text())["rows"]
    assert [row["style_index"] for row in rows] == [0, 1]
    # each style's image compared with that style's rendering: the two renderings differ
    first, second = (Image.open(tmp_path / "kept" / f"both-style{i}" / "photo.png") for i in range(2))
    assert first.tobytes() != second.tobytes()


def test_the_first_colour_channels_of_slot_0_are_the_colour_code(network):
    """COLOUR_CHANNELS counts the colour code and its constant channel, the filters following: on a flat colour
    the filters answer nothing and the constant channel is the code's gain."""
    features = network(torch.full((1, 3, 16, 16), 120.0))[0]
    code, filters = features[:, :loss_network.COLOUR_CHANNELS], features[:, loss_network.COLOUR_CHANNELS:]
    assert filters.shape[1] > 0 and filters.abs().max() < 1e-4
    torch.testing.assert_close(code[:, -1], torch.full_like(code[:, -1], loss_network.COLOUR_GAIN))
    assert code[:, :-1].max() > 0  # some levels lie below this gray


def test_unseen_style_loss_splits_the_style_loss_into_parts_that_sum_to_it(network):
    """benchmarks/unseen_style_loss.py's table of where a style loss lies: its parts add up to vgg.style_loss,
    and a difference in the colour code's block of the Gram matrix shows in the colour part alone."""
    import unseen_style_loss

    generator = torch.Generator().manual_seed(0)
    features = network(torch.rand(2, 3, 24, 24, generator=generator) * 255)
    grams = [vgg.gram_matrix(f) for f in network(torch.rand(1, 3, 32, 32, generator=generator) * 255)]
    parts = unseen_style_loss.style_parts(features, grams, loss_network.COLOUR_CHANNELS)
    assert len(parts) == len(unseen_style_loss.part_names(loss_network.COLOUR_CHANNELS)) == 5
    torch.testing.assert_close(sum(parts), vgg.style_loss(features, [grams], [1.0]))
    assert len(unseen_style_loss.part_names(0)) == len(unseen_style_loss.style_parts(features, grams, 0)) == 4

    own = [vgg.gram_matrix(f) for f in features]
    own[0] = own[0].clone()
    own[0][:, :loss_network.COLOUR_CHANNELS, :loss_network.COLOUR_CHANNELS] += 1
    colour, *rest = unseen_style_loss.style_parts(features, own, loss_network.COLOUR_CHANNELS)
    channels = features[0].shape[1]
    torch.testing.assert_close(colour, torch.tensor(loss_network.COLOUR_CHANNELS ** 2 / channels ** 2))
    assert all(part.abs() < 1e-9 for part in rest)
