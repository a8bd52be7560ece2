"""The benchmarks' and figures' stand-in for a model that flickers (benchmarks/flicker.py, tools/make_figures.py)."""

import torch


def flickering_network(seed: int = 0) -> torch.nn.Module:
    """A seeded random TransformerNet whose output spans 0-255: it follows every small change of its input, as
    sharply trained styles do, so it shows and measures what blending does where no such model can be trained
    (the bundled models, made with a random loss network, come out smooth and hardly flicker)."""
    from transformer_net import TransformerNet

    torch.manual_seed(seed)
    model = TransformerNet().eval()
    with torch.no_grad():  # an untrained network gives near-black: spread its output around mid-grey
        model.deconv3.conv2d.weight.mul_(30)
        model.deconv3.conv2d.bias.fill_(128)
    return model
