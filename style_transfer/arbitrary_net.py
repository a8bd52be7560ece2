"""Any style from one picture: the arbitrary-style network (after Ghiasi, Lee, Kudlur, Dumoulin and Shlens 2017).

`ArbitraryTransformerNet` is the `TransformerNet` whose every instance norm takes its scale and shift from a
`StylePredictor` instead of holding them: the predictor maps a style picture to the 3,200 numbers a style is in a
conditional network (conditional_net.py), 3,206 with the output norm (transformer_net.py), which models trained now
have: it gives the predictor each output colour's mean and contrast directly (docs/styles.md measures it). Its
input is the picture's per-channel mean and standard deviation at the loss network's four layers (the statistics
AdaIN, Huang and Belongie 2017, shows carry style), log1p-compressed (the layers' activations differ by orders of
magnitude); then two linear layers down to a bottleneck of 100 numbers (Ghiasi's size), the style's embedding; then
one linear head for all norms (block-wise the same as one head per norm). Why not Ghiasi's Inception-v3 predictor:
it needs ImageNet weights we cannot ship or fetch, while the loss network is there anyway (train.py needs it), and
its statistics work with every loss network we have (--vgg-weights imagenet|offline|random|PATH). The head is
linear, so mixing embeddings and mixing the predicted scales and shifts are one and the same: a mix of pictures is
a mix of a conditional network's styles (`to_conditional`), at no cost per pixel.

The predictor depends on the loss network it was trained with: the model file records its name, the size of
its statistics and a fingerprint (the statistics of a fixed seeded probe image), and `check_loss_network`
refuses another. Rendering predicts once per picture and then renders a `ConditionalTransformerNet`: tiling,
--strength, --preserve-color, --temporal and --style-mix work unchanged, and the prediction is never per frame.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from style_transfer import image_io
from style_transfer.conditional_net import ConditionalTransformerNet
from transformer_net import InstanceNorm, TransformerNet
from utils import UserError

BOTTLENECK = 100  # numbers in a style's embedding (Ghiasi et al. use 100)
HIDDEN = 256
STYLE_SIZE = 256  # default shorter side of a style picture when its statistics are taken
PROBE_SEED = 1234
FINGERPRINT_TOLERANCE = 1e-3


def style_statistics(features: Sequence[torch.Tensor]) -> torch.Tensor:
    """B x sum(2 C): log1p of each channel's mean and standard deviation at every layer (fp32)."""
    parts = []
    for layer in features:
        layer = layer.float()
        mean = layer.mean(dim=(2, 3))
        std = (layer.var(dim=(2, 3), unbiased=False) + 1e-8).sqrt()
        parts += [mean, std]
    return torch.log1p(torch.cat(parts, dim=1).clamp_min(0))


class StylePredictor(nn.Module):
    """Style statistics -> a 100-number embedding -> every norm's scale and shift (B x 2 x sum(C))."""

    def __init__(self, input_features: int, channels: Sequence[int]):
        super().__init__()
        self.channels = list(channels)
        self.encoder = nn.Sequential(nn.Linear(input_features, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, BOTTLENECK))
        total = sum(self.channels)
        self.head = nn.Linear(BOTTLENECK, 2 * total)
        with torch.no_grad():  # start near the identity style: scale 1, shift 0
            self.head.weight.mul_(0.1)
            self.head.bias.copy_(torch.cat([torch.ones(total), torch.zeros(total)]))

    def embed(self, statistics: torch.Tensor) -> torch.Tensor:
        return self.encoder(statistics)

    def params(self, embedding: torch.Tensor) -> torch.Tensor:
        """B x P (all scales, then all shifts): linear in the embedding."""
        return self.head(embedding)

    def forward(self, statistics: torch.Tensor) -> torch.Tensor:
        return self.params(self.embed(statistics))


class PredictedInstanceNorm2d(nn.Module):
    """Instance normalisation whose scale and shift (B x C each, or 1 x C) are given per call by the network."""

    def __init__(self, channels: int):
        super().__init__()
        self.num_features = channels
        self.norm = InstanceNorm(channels, affine=False)
        self.given: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.given is None:
            raise RuntimeError("an ArbitraryTransformerNet runs with style_statistics or style_params")
        scale, shift = self.given
        normalised = self.norm(x)
        return torch.addcmul(shift[:, :, None, None].to(normalised.dtype), normalised,
                             scale[:, :, None, None].to(normalised.dtype))


class ArbitraryTransformerNet(TransformerNet):
    """TransformerNet + StylePredictor. `forward(x, style_statistics)` (training: one row of statistics per image)
    or `forward(x, style_params=P)` (B x P, or 1 x P for all: e.g. for an export that takes the style as input)."""

    def __init__(self, loss_network: str, input_features: int, fingerprint: Sequence[float],
                 style_size: int = STYLE_SIZE, output_norm: bool = False):
        super().__init__(output_norm)  # its scale and shift predicted like every other norm's (transformer_net.py)
        self.loss_network, self.input_features = loss_network, input_features
        self.fingerprint, self.style_size = [float(f) for f in fingerprint], style_size
        self.norm_names: list[str] = []
        for parent_name, parent in list(self.named_modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, InstanceNorm):
                    setattr(parent, name, PredictedInstanceNorm2d(child.num_features))
                    self.norm_names.append(f"{parent_name}.{name}" if parent_name else name)
        self.norms = [self.get_submodule(n) for n in self.norm_names]
        self.predictor = StylePredictor(input_features, [n.num_features for n in self.norms])

    def settings(self) -> dict:
        """What the model file records beside the weights: what the predictor's input needs."""
        return {"loss_network": self.loss_network, "input_features": self.input_features,
                "fingerprint": list(self.fingerprint), "style_size": self.style_size,
                "output_norm": self.has_output_norm}

    def split(self, params: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """B x P as each norm's (scale, shift), B x C each."""
        total = sum(self.predictor.channels)
        scales, shifts = params[:, :total], params[:, total:]
        pieces, start = [], 0
        for channels in self.predictor.channels:
            pieces.append((scales[:, start:start + channels], shifts[:, start:start + channels]))
            start += channels
        return pieces

    def forward(self, x: torch.Tensor, style_statistics: torch.Tensor | None = None,
                style_params: torch.Tensor | None = None) -> torch.Tensor:
        if style_params is None:
            if style_statistics is None:
                raise ValueError("give style_statistics or style_params")
            # fp32 also under a bf16/fp16 autocast (training), as predict() computes it for rendering: the
            # predictor's layers and their gradients. The scales still act at the activations' precision (below),
            # as a conditional model's do when it renders in bf16.
            with torch.autocast(x.device.type, enabled=False):
                style_params = self.predictor(style_statistics.float())
        for norm, given in zip(self.norms, self.split(style_params), strict=True):
            norm.given = given
        try:
            return super().forward(x)
        finally:
            for norm in self.norms:
                norm.given = None


def probe_statistics(loss_network: nn.Module) -> torch.Tensor:
    """The statistics of a fixed seeded 64x64 image: 1 x F."""
    generator = torch.Generator().manual_seed(PROBE_SEED)
    probe = torch.rand(1, 3, 64, 64, generator=generator) * 255
    device = next(iter(loss_network.buffers()), torch.zeros(())).device
    with torch.no_grad():
        return style_statistics(loss_network(probe.to(device))).cpu()


def fingerprint_of(statistics: torch.Tensor) -> list[float]:
    """A loss network's fingerprint: the mean of its probe statistics over 8 equal parts (a few numbers that
    differ between offline, random and ImageNet networks)."""
    return [float(part.mean()) for part in statistics.flatten().tensor_split(8)]


def check_loss_network(model: ArbitraryTransformerNet, loss_network: nn.Module, name: str, model_path: str) -> None:
    """Refuse, in one line, a loss network whose statistics are not the ones the predictor was trained on."""
    statistics = probe_statistics(loss_network)
    expected = f"it was trained with --vgg-weights {model.loss_network}"
    if statistics.shape[1] != model.input_features:
        raise UserError(f"{model_path}: its style predictor does not fit the loss network --vgg-weights {name} "
                        f"({statistics.shape[1]} statistics, the predictor takes {model.input_features}); {expected}")
    found = torch.tensor(fingerprint_of(statistics))
    if not torch.allclose(found, torch.tensor(model.fingerprint), rtol=FINGERPRINT_TOLERANCE, atol=1e-5):
        raise UserError(f"{model_path}: its style predictor does not fit the loss network --vgg-weights {name} "
                        f"(other features of the same size); {expected}")


def style_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """1 x 3 x H x W in 0-255, the shorter side scaled to `size`, as the predictor reads a picture."""
    scale = size / min(image.size)
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         Image.Resampling.LANCZOS)
    return image_io.image_to_tensor(image).unsqueeze(0)


@torch.no_grad()
def predict(model: ArbitraryTransformerNet, loss_network: nn.Module, images: Sequence[Image.Image]) -> torch.Tensor:
    """N x P: the scales and shifts of each picture's style."""
    device = next(model.parameters()).device
    rows = []
    for image in images:
        features = loss_network(style_tensor(image, model.style_size).to(device))
        rows.append(model.predictor(style_statistics(features)))
    return torch.cat(rows)


def to_conditional(model: ArbitraryTransformerNet, params: torch.Tensor,
                   names: Sequence[str]) -> ConditionalTransformerNet:
    """A conditional network of len(names) styles whose styles are these predicted ones (N x P), in eval mode:
    the convolutions are the arbitrary model's, the predictor is left behind."""
    conditional = ConditionalTransformerNet(names, model.has_output_norm)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("predictor.")}
    for name, (scale, shift) in zip(model.norm_names, model.split(params.detach().float().cpu()), strict=True):
        state[f"{name}.weight"], state[f"{name}.bias"] = scale.clone(), shift.clone()
    conditional.load_state_dict(state)
    return conditional.to(next(model.parameters()).device).eval()


def arbitrary_settings_of(raw: object) -> dict | None:
    """The `arbitrary` entry of a loaded model file (see settings()), None for another model; ValueError if broken."""
    settings = raw.get("arbitrary") if isinstance(raw, dict) else None
    if settings is None:
        return None
    keys = {"loss_network": str, "input_features": int, "fingerprint": list, "style_size": int}
    if not isinstance(settings, dict) or not all(isinstance(settings.get(k), t) for k, t in keys.items()):
        raise ValueError("its arbitrary-style settings are incomplete")
    if not isinstance(settings.get("output_norm", False), bool):
        raise ValueError("its arbitrary-style settings are broken (output_norm)")
    unknown = sorted(settings.keys() - keys.keys() - {"output_norm"})
    if unknown:
        raise ValueError(f"its arbitrary-style settings hold {', '.join(unknown)}, unknown here (a newer version's "
                         "file?)")
    return {"output_norm": False, **settings}  # files from before the output norm have none


def identity_params(model: ArbitraryTransformerNet, count: int = 1) -> torch.Tensor:
    """count x P of scale 1 and shift 0 (a neutral style)."""
    total = sum(model.predictor.channels)
    return torch.cat([torch.ones(count, total), torch.zeros(count, total)], dim=1)


def resized_crops(images: Sequence[torch.Tensor], crop: int, generator: torch.Generator) -> torch.Tensor:
    """Ghiasi's augmentation of style pictures: each 3 x H x W picture (shorter side >= crop) scaled so its shorter
    side is a random size from `crop` to its own, then a random crop x crop square of it; stacked."""
    crops = []
    for image in images:
        short = min(image.shape[-2:])
        side = int(torch.randint(crop, max(crop, short) + 1, (1,), generator=generator))
        scale = side / short
        size = (max(crop, round(image.shape[-2] * scale)), max(crop, round(image.shape[-1] * scale)))
        scaled = F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
        top = int(torch.randint(0, size[0] - crop + 1, (1,), generator=generator))
        left = int(torch.randint(0, size[1] - crop + 1, (1,), generator=generator))
        crops.append(scaled[:, top:top + crop, left:left + crop])
    return torch.stack(crops)
