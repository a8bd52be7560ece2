import pytest
import torch

from transformer_net import OUTPUT_CENTRE, OUTPUT_SPREAD, TransformerNet


def expected_names() -> list[str]:
    """The parameter names of the PyTorch fast_neural_style example's TransformerNet."""
    def conv(prefix):
        return [f"{prefix}.conv2d.weight", f"{prefix}.conv2d.bias"]

    def norm(prefix):
        return [f"{prefix}.weight", f"{prefix}.bias"]

    names = conv("conv1") + norm("in1") + conv("conv2") + norm("in2") + conv("conv3") + norm("in3")
    for i in range(1, 6):
        names += conv(f"res{i}.conv1") + norm(f"res{i}.in1") + conv(f"res{i}.conv2") + norm(f"res{i}.in2")
    names += conv("deconv1") + norm("in4") + conv("deconv2") + norm("in5") + conv("deconv3")
    return names


def test_parameter_count_and_names_match_the_example():
    model = TransformerNet()
    assert sum(p.numel() for p in model.parameters()) == 1_679_235
    assert list(model.state_dict()) == expected_names()
    assert len(model.state_dict()) == 62


def test_the_output_norm_sets_each_colours_mean_and_contrast_and_is_off_by_default():
    """With an output norm (arbitrary-style models) each output colour's mean is OUTPUT_CENTRE + OUTPUT_SPREAD x the
    norm's shift and its standard deviation OUTPUT_SPREAD x its scale, whatever the convolutions give; its two
    entries come after the example's, which a network without one (the default) holds alone."""
    torch.manual_seed(0)
    model = TransformerNet(output_norm=True).eval()
    scale, shift = torch.tensor([0.5, 1.0, 2.0]), torch.tensor([-1.0, 0.0, 0.5])
    with torch.no_grad():
        model.output_norm.weight.copy_(scale)
        model.output_norm.bias.copy_(shift)
        out = model(torch.rand(2, 3, 32, 36) * 255)
    torch.testing.assert_close(out.mean(dim=(2, 3)), (OUTPUT_CENTRE + OUTPUT_SPREAD * shift).expand(2, 3))
    torch.testing.assert_close(out.std(dim=(2, 3), unbiased=False), (OUTPUT_SPREAD * scale).expand(2, 3),
                               rtol=1e-3, atol=1e-3)
    assert list(model.state_dict()) == [*expected_names(), "output_norm.weight", "output_norm.bias"]
    assert not TransformerNet().has_output_norm


def test_layer_shapes():
    state = TransformerNet().state_dict()
    assert state["conv1.conv2d.weight"].shape == (32, 3, 9, 9)
    assert state["conv2.conv2d.weight"].shape == (64, 32, 3, 3)
    assert state["conv3.conv2d.weight"].shape == (128, 64, 3, 3)
    assert state["res3.conv2.conv2d.weight"].shape == (128, 128, 3, 3)
    assert state["deconv1.conv2d.weight"].shape == (64, 128, 3, 3)
    assert state["deconv2.conv2d.weight"].shape == (32, 64, 3, 3)
    assert state["deconv3.conv2d.weight"].shape == (3, 32, 9, 9)


@pytest.mark.parametrize("height,width", [(1, 1), (7, 13), (33, 50), (64, 64), (97, 31)])
def test_output_has_the_input_size(height, width):
    model = TransformerNet().eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, height, width) * 255)
    assert out.shape == (2, 3, height, width)
    assert torch.isfinite(out).all()


def test_padding_does_not_change_a_multiple_of_four_input():
    """Inputs whose sides are multiples of 4 run exactly as in the example (no padding)."""
    torch.manual_seed(0)
    model = TransformerNet().eval()
    x = torch.rand(1, 3, 20, 24) * 255
    with torch.no_grad():
        padded_only_when_needed = model(x)
        y = model.relu(model.in1(model.conv1(x)))
        y = model.relu(model.in2(model.conv2(y)))
        y = model.relu(model.in3(model.conv3(y)))
        for block in (model.res1, model.res2, model.res3, model.res4, model.res5):
            y = block(y)
        y = model.relu(model.in4(model.deconv1(y)))
        y = model.relu(model.in5(model.deconv2(y)))
        plain = model.deconv3(y)
    torch.testing.assert_close(padded_only_when_needed, plain)
