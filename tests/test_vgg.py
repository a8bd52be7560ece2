import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torchvision.models import vgg16

import vgg
from conftest import ROOT, assert_clean_failure
from utils import UserError


def hand_gram(features):
    b, c, h, w = features.shape
    gram = torch.zeros(b, c, c)
    for n in range(b):
        for i in range(c):
            for j in range(c):
                gram[n, i, j] = (features[n, i] * features[n, j]).sum() / (c * h * w)
    return gram


def test_gram_matrix_matches_a_hand_computation():
    features = torch.randn(2, 3, 4, 5)
    torch.testing.assert_close(vgg.gram_matrix(features), hand_gram(features))


def test_style_loss_is_the_weighted_sum_over_styles_and_layers():
    torch.manual_seed(0)
    output = vgg.VggOutputs(*[torch.randn(2, c, 6, 6) for c in (2, 3, 4, 5)])
    styles = [[hand_gram(torch.randn(1, c, 5, 7)) for c in (2, 3, 4, 5)] for _ in range(2)]
    expected = torch.tensor(0.0)
    for weight, grams in zip([0.25, 0.75], styles, strict=True):
        for features, gram in zip(output, grams, strict=True):
            expected += weight * ((hand_gram(features) - gram) ** 2).mean()
    torch.testing.assert_close(vgg.style_loss(output, styles, [0.25, 0.75]), expected)


def test_content_loss_is_mse_on_relu2_2():
    output = vgg.VggOutputs(*[torch.randn(1, 2, 3, 3) for _ in range(4)])
    target = torch.randn(1, 2, 3, 3)
    expected = ((output.relu2_2 - target) ** 2).sum() / target.numel()
    torch.testing.assert_close(vgg.content_loss(output, target), expected)


def test_total_variation_of_a_ramp():
    image = torch.arange(5.0).repeat(1, 1, 3, 1)  # rises by 1 along the width, flat along the height
    assert vgg.total_variation(image).item() == pytest.approx(1.0)


@pytest.fixture(scope="module")
def random_vgg():
    return vgg.load_vgg16("random")


def test_random_weights_are_seeded_and_frozen(random_vgg):
    again = vgg.load_vgg16("random")
    for a, b in zip(random_vgg.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not any(p.requires_grad for p in random_vgg.parameters())
    random_vgg.train()
    assert not random_vgg.training


def test_features_have_the_vgg16_shapes_and_input_is_untouched(random_vgg):
    images = torch.rand(2, 3, 32, 32) * 255
    before = images.clone()
    features = random_vgg(images)
    assert [f.shape[1:] for f in features] == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)]
    assert torch.equal(images, before)
    partial = random_vgg(images, depth=2)
    torch.testing.assert_close(partial[1], features.relu2_2)


def test_normalisation_uses_imagenet_statistics(random_vgg):
    """A 0-255 image is mapped to ((x/255) - mean) / std before the first convolution."""
    images = torch.rand(1, 3, 8, 8) * 255
    mean = torch.tensor(vgg.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(vgg.IMAGENET_STD).view(1, 3, 1, 1)
    first_conv = random_vgg.slices[0][0]
    expected = F.relu(first_conv((images / 255 - mean) / std))
    normalised = (images - random_vgg.mean) / random_vgg.std
    torch.testing.assert_close(F.relu(first_conv(normalised)), expected)


@pytest.mark.parametrize("layout", ["full", "features", "bare"])
def test_loads_a_local_torchvision_state_dict(tmp_path, layout):
    torch.manual_seed(3)
    source = vgg16(weights=None)
    state = source.state_dict()
    if layout == "features":
        state = {k: v for k, v in state.items() if k.startswith("features.")}
    elif layout == "bare":
        state = source.features.state_dict()
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    loaded = vgg.load_vgg16(str(path))
    torch.testing.assert_close(loaded.slices[3][-2].weight, source.features[21].weight)


def test_refuses_a_file_that_is_not_vgg16(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3)}, path)
    with pytest.raises(UserError, match="not a VGG16 state_dict"):
        vgg.load_vgg16(str(path))
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(UserError, match="cannot read"):
        vgg.load_vgg16(str(tmp_path / "text.pth"))


def test_missing_imagenet_weights_explain_the_alternatives(tmp_path):
    """Offline and with an empty cache: one paragraph naming the cache path and both alternatives."""
    code = "import utils, vgg; utils.run_main(lambda argv: vgg.load_vgg16('imagenet'))"
    env = {"TORCH_HOME": str(tmp_path / "torch home"), "PATH": "/usr/bin:/bin",
           "HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1
    assert_clean_failure(result, str(tmp_path / "torch home"), "--vgg-weights PATH", "--vgg-weights random")


def test_only_the_layers_the_losses_use_are_built(tmp_path, monkeypatch):
    """VGG16's classifier (124M parameters) and its fifth block are never allocated, not even to be thrown away."""
    torch.manual_seed(3)
    path = tmp_path / "vgg16.pth"
    torch.save(vgg16(weights=None).state_dict(), path)  # a full torchvision file, classifier included

    def no_linear(*args, **kwargs):
        raise AssertionError("a Linear layer was built")

    monkeypatch.setattr(torch.nn.Linear, "__init__", no_linear)
    assert len(vgg.vgg16_features()) == 23  # vgg16().features up to relu4_3
    network = vgg.load_vgg16(str(path))
    convolutions = [m for m in network.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convolutions) == 10  # relu1_2 ... relu4_3: 2 + 2 + 3 + 3
    assert sum(p.numel() for p in network.parameters()) == 7_635_264
