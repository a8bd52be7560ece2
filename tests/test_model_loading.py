import pickle
from pathlib import Path

import pytest
import torch

from style_transfer.model_files import load_transformer
from transformer_net import TransformerNet
from utils import UserError

# The original multi-style repo's Transformer saved every tensor twice, under these two module trees.
NAMED = {"conv1.conv2d": "conv1.conv1", "in1": "norm1", "conv2.conv2d": "conv2.conv1", "in2": "norm2",
         "conv3.conv2d": "conv3.conv1", "in3": "norm3", "deconv1.conv2d": "up1.conv1", "in4": "norm4",
         "deconv2.conv2d": "up2.conv1", "in5": "norm5", "deconv3.conv2d": "conv4.conv1"}
SEQUENTIAL = {"conv1.conv2d": "encoder.0.conv1", "in1": "encoder.1", "conv2.conv2d": "encoder.3.conv1",
              "in2": "encoder.4", "conv3.conv2d": "encoder.6.conv1", "in3": "encoder.7",
              "deconv1.conv2d": "decoder.0.conv1", "in4": "decoder.1", "deconv2.conv2d": "decoder.3.conv1",
              "in5": "decoder.4", "deconv3.conv2d": "decoder.6.conv1"}
for _i in range(1, 6):
    for _j in (1, 2):
        NAMED[f"res{_i}.conv{_j}.conv2d"] = f"res{_i}.ConvLayer{_j}.conv1"
        NAMED[f"res{_i}.in{_j}"] = f"res{_i}.norm{_j}"
        SEQUENTIAL[f"res{_i}.conv{_j}.conv2d"] = f"residual.{_i - 1}.ConvLayer{_j}.conv1"
        SEQUENTIAL[f"res{_i}.in{_j}"] = f"residual.{_i - 1}.norm{_j}"


class CreatesAFile:
    """Unpickling this calls open(path, "w"): a stand-in for a model file that runs code."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def source_model() -> TransformerNet:
    torch.manual_seed(0)
    return TransformerNet().eval()


def rename(state: dict, mapping: dict) -> dict:
    renamed = {}
    for key, tensor in state.items():
        module, param = key.rsplit(".", 1)
        renamed[f"{mapping[module]}.{param}"] = tensor.clone()
    return renamed


def with_running_stats(state: dict) -> dict:
    """Old releases of the example saved InstanceNorm running statistics beside each norm's weights."""
    out = {}
    for key, tensor in state.items():
        out[key] = tensor
        module, param = key.rsplit(".", 1)
        if module.split(".")[-1].startswith("in") and param == "bias":
            out[f"{module}.running_mean"] = torch.zeros_like(tensor)
            out[f"{module}.running_var"] = torch.ones_like(tensor)
    assert len(out) == len(state) + 2 * 15
    return out


LAYOUTS = {
    "ours": lambda s: s,
    "example with running stats": with_running_stats,
    "original, both copies": lambda s: {**rename(s, NAMED), **rename(s, SEQUENTIAL)},
    "original, named copy only": lambda s: rename(s, NAMED),
    "original, sequential copy only": lambda s: rename(s, SEQUENTIAL),
    "training checkpoint": lambda s: {"model": s, "step": 3, "elapsed_s": 1.5},
    "DataParallel prefix": lambda s: {f"module.{k}": v for k, v in s.items()},
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_loads_to_the_same_network(tmp_path, layout):
    model = source_model()
    path = tmp_path / "m.pth"
    torch.save(LAYOUTS[layout](model.state_dict()), path)
    x = torch.rand(1, 3, 24, 32) * 255
    torch.testing.assert_close(load_transformer(path)(x), model(x), atol=0, rtol=0)


def test_example_legacy_serialisation_and_fp16_weights(tmp_path):
    model = source_model()
    path = tmp_path / "mosaic.model"  # old releases of the example: .model, pre-zip serialisation
    torch.save(with_running_stats(model.state_dict()), path, _use_new_zipfile_serialization=False)
    x = torch.rand(1, 3, 20, 20) * 255
    torch.testing.assert_close(load_transformer(path)(x), model(x), atol=0, rtol=0)

    torch.save({k: v.half() for k, v in model.state_dict().items()}, tmp_path / "half.pth")
    model.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    torch.testing.assert_close(load_transformer(tmp_path / "half.pth")(x), model(x), atol=0, rtol=0)


def write_refused(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind} model.pth"
    state = source_model().state_dict()
    if kind == "wrong keys":
        torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    elif kind == "wrong shapes":
        torch.save({**state, "conv1.conv2d.weight": torch.zeros(16, 3, 9, 9)}, path)
    elif kind == "no state_dict":
        torch.save([1, 2, 3], path)
    elif kind == "text":
        path.write_text("this is not a model\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        torch.save(state, path)
        path.write_bytes(path.read_bytes()[:100_000])
    return path


@pytest.mark.parametrize("kind,reason", [
    ("wrong keys", "missing"), ("wrong shapes", "conv1.conv2d.weight has shape [16, 3, 9, 9]"),
    ("no state_dict", "no state_dict"), ("text", "not a file written by torch.save"),
    ("empty", "truncated or corrupt"), ("truncated", "truncated or corrupt"),
])
def test_files_that_are_not_models_are_refused_in_one_line(tmp_path, kind, reason):
    path = write_refused(tmp_path, kind)
    with pytest.raises(UserError) as error:
        load_transformer(path)
    message = str(error.value)
    assert str(path) in message and reason in message and "\n" not in message, message


@pytest.mark.parametrize("saver", ["pickle", "torch.save"])
def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path, saver):
    marker = tmp_path / "created by unpickling"
    path = tmp_path / "evil.pth"
    if saver == "pickle":
        path.write_bytes(pickle.dumps(CreatesAFile(marker)))
    else:
        torch.save({"conv1.conv2d.weight": CreatesAFile(marker)}, path)
    with pytest.raises(UserError, match="pickled objects") as error:
        load_transformer(path)
    assert "\n" not in str(error.value)
    assert not marker.exists()

