"""The frozen VGG16 loss network and the perceptual losses built on it."""

import contextlib
from collections import namedtuple
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import VGG16_Weights

from utils import UserError, warn

VggOutputs = namedtuple("VggOutputs", ["relu1_2", "relu2_2", "relu3_3", "relu4_3"])
LAYER_ENDS = (4, 9, 16, 23)  # indices into vgg16().features just past each named ReLU
CHANNELS = (64, 64, "pool", 128, 128, "pool", 256, 256, 256, "pool", 512, 512, 512)  # VGG16's "D" to conv4_3
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_SEED = 0


class Vgg16Features(nn.Module):
    """relu1_2, relu2_2, relu3_3 and relu4_3 of VGG16 for RGB batches in 0-255."""

    def __init__(self, features: nn.Sequential):
        super().__init__()
        layers = list(features.children())
        starts = (0,) + LAYER_ENDS[:-1]
        self.slices = nn.ModuleList(nn.Sequential(*layers[a:b]) for a, b in zip(starts, LAYER_ENDS, strict=True))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "Vgg16Features":
        return super().train(False)  # frozen: always in eval mode

    def forward(self, x: torch.Tensor, depth: int = 4) -> VggOutputs | list[torch.Tensor]:
        """Features of a 0-255 batch; with depth < 4 only the first `depth` layers are computed."""
        h = (x - self.mean) / self.std  # a new tensor: the caller's batch is never modified
        outputs = []
        for layer in self.slices[:depth]:
            h = layer(h)
            outputs.append(h)
        return VggOutputs(*outputs) if depth == 4 else outputs


def imagenet_cache_path() -> Path:
    url = VGG16_Weights.IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def vgg16_features() -> nn.Sequential:
    """torchvision's vgg16().features up to relu4_3 (the same layer indices and state_dict keys), initialised as
    torchvision initialises it, without building the rest: the fifth block and the 124M-parameter classifier
    that torchvision's vgg16() allocates would only be thrown away."""
    layers: list[nn.Module] = []
    channels = 3
    for entry in CHANNELS:
        if entry == "pool":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        conv = nn.Conv2d(channels, entry, kernel_size=3, padding=1)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(conv.bias)
        layers += [conv, nn.ReLU(inplace=True)]
        channels = entry
    return nn.Sequential(*layers)


def load_vgg16(weights: str = "imagenet") -> Vgg16Features:
    """Build the loss network from `imagenet`, `random` or a path to a torchvision state_dict."""
    if weights == "random":
        warn("--vgg-weights random: the loss network is untrained, so results will not be artistic")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            features = vgg16_features()
        return Vgg16Features(features)
    features = vgg16_features()
    state = _imagenet_state() if weights == "imagenet" else _state_from_file(weights)
    features.load_state_dict(_only_features(state, features.state_dict(), weights))
    return Vgg16Features(features)


def _imagenet_state() -> dict[str, torch.Tensor]:
    try:
        return torch.hub.load_state_dict_from_url(
            VGG16_Weights.IMAGENET1K_V1.url, map_location="cpu", weights_only=True)
    except Exception as exc:  # any network or file failure ends in the same advice
        raise UserError(
            f"the ImageNet VGG16 weights are not in torchvision's cache ({imagenet_cache_path()}) "
            f"and could not be downloaded ({type(exc).__name__}: {exc}). Either run once on a "
            "machine with internet (the file is then reused offline; copy it to that path), or "
            "pass --vgg-weights PATH to a local torchvision VGG16 state_dict, or --vgg-weights "
            "offline for the offline loss network (colour and some texture, not artistic style), or "
            "--vgg-weights random for an untrained VGG16 (smoke runs only)."
        ) from None


def _state_from_file(path: str) -> object:
    if not Path(path).is_file():
        raise UserError(f"--vgg-weights: no such file: {path} (use imagenet, offline, random or a PATH)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(f"--vgg-weights: cannot read {path} as a state_dict ({reason})") from None


def _only_features(state: object, reference: dict[str, torch.Tensor],
                   source: str) -> dict[str, torch.Tensor]:
    """Accept a full VGG16 state_dict, its `features.*` part, or that part without the prefix."""
    if not isinstance(state, dict):
        raise UserError(f"--vgg-weights: {source} does not hold a state_dict")
    features = {}
    for key, tensor in state.items():
        name = key.removeprefix("features.") if isinstance(key, str) else key
        if name in reference:
            features[name] = tensor
    missing = [k for k in reference if k not in features]
    wrong = [k for k in features if features[k].shape != reference[k].shape]
    if missing or wrong:
        problem = f"missing {missing[0]}" if missing else f"wrong shape for {wrong[0]}"
        raise UserError(f"--vgg-weights: {source} is not a VGG16 state_dict ({problem})")
    return features


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Channel correlations, normalised by C*H*W so layers and image sizes weigh alike."""
    b, c, h, w = features.shape
    flat = features.to(torch.promote_types(features.dtype, torch.float32)).reshape(b, c, h * w)
    # The sums run over H*W products: keep them in fp32 also under bf16/fp16 autocast.
    no_autocast = (torch.autocast(features.device.type, enabled=False) if features.device.type in ("cpu", "cuda")
                   else contextlib.nullcontext())
    with no_autocast:
        return flat.bmm(flat.transpose(1, 2)) / (c * h * w)


def content_loss(output_features: VggOutputs, content_relu2_2: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(output_features.relu2_2, content_relu2_2)


def style_loss(output_features: VggOutputs, style_grams: list[list[torch.Tensor]],
               style_weights: list[float]) -> torch.Tensor:
    """Σ_s w_s Σ_layers MSE(G(ŷ), G(style_s)); each style's Grams have batch size 1."""
    output_grams = [gram_matrix(f) for f in output_features]
    total = output_grams[0].new_zeros(())
    for grams, weight in zip(style_grams, style_weights, strict=True):
        if weight == 0:
            continue
        for output_gram, gram in zip(output_grams, grams, strict=True):
            total = total + weight * F.mse_loss(output_gram, gram.expand_as(output_gram))
    return total


def per_image_style_loss(output_features: VggOutputs, style_grams: list[list[torch.Tensor]],
                         styles: torch.Tensor) -> torch.Tensor:
    """Σ_layers MSE(G(ŷ_i), G(style_{styles[i]})): each image against its own style's Grams (a conditional
    network's training); with the same style for every image it equals style_loss with that style alone.
    `styles` must be on the features' device (made there: a copy from the host every step would wait)."""
    total = 0
    for layer, features in enumerate(output_features):
        output_gram = gram_matrix(features)
        targets = torch.cat([grams[layer] for grams in style_grams])[styles]
        total = total + F.mse_loss(output_gram, targets)
    return total


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels (smoothness prior)."""
    return ((images[..., 1:, :] - images[..., :-1, :]).abs().mean()
            + (images[..., :, 1:] - images[..., :, :-1]).abs().mean())
