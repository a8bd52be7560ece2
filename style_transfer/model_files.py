"""Model files: saving a TransformerNet with its provenance JSON, the one safe loader (weights_only, every
supported layout: ours, the PyTorch example's, the original repo's, and conditional models with their style
names), and reading training checkpoints.

A plain model is a plain state_dict. A conditional model (conditional_net.py) is
`{"style_names": [...], "state_dict": {...}}`: lists, strings and tensors only, so weights_only loads it. An
arbitrary-style model (arbitrary_net.py) is `{"arbitrary": {settings}, "state_dict": {...}}`: the transformer and
its style predictor in one state_dict, and what the predictor's input needs (which loss network, its fingerprint)."""

import contextlib
import json
import os
import pickle
import platform
import re
import shlex
import sys
import warnings
from pathlib import Path

import torch

from style_transfer.arbitrary_net import ArbitraryTransformerNet, arbitrary_settings_of
from style_transfer.conditional_net import ConditionalTransformerNet, style_count_of
from transformer_net import TransformerNet, state_has_output_norm
from utils import UserError, require_file, save_json, torch_save


def save_model(model: torch.nn.Module, path: str | Path, provenance: dict, fp16: bool = False) -> None:
    """Save a plain state_dict (the example's layout) and its provenance as JSON beside it.

    With `fp16` the tensors are stored as float16: half the size, and load_state_dict casts them
    back to float32 (here and in the PyTorch example)."""
    path = Path(path)
    state = {k: (v.half() if fp16 else v).detach().cpu() for k, v in model.state_dict().items()}
    if isinstance(model, ConditionalTransformerNet):
        state = {"style_names": list(model.style_names), "state_dict": state}
    elif isinstance(model, ArbitraryTransformerNet):
        state = {"arbitrary": model.settings(), "state_dict": state}
    torch_save(state, path)
    save_json(provenance, provenance_path(path))


def provenance_path(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".json")


def read_provenance(model_path: str | Path) -> dict | None:
    """The provenance JSON beside a model file, or None where there is none (other projects' models)."""
    try:
        return json.loads(provenance_path(model_path).read_text())
    except (OSError, ValueError):
        return None


# The original multi-style repo saved each tensor twice, under two module trees; either maps.
_LEGACY_RENAMES = [
    (r"conv1\.conv1\.", "conv1.conv2d."), (r"conv2\.conv1\.", "conv2.conv2d."),
    (r"conv3\.conv1\.", "conv3.conv2d."), (r"conv4\.conv1\.", "deconv3.conv2d."),
    (r"norm([1-5])\.", r"in\1."),
    (r"res([1-5])\.ConvLayer([12])\.conv1\.", r"res\1.conv\2.conv2d."),
    (r"res([1-5])\.norm([12])\.", r"res\1.in\2."),
    (r"up([12])\.conv1\.", r"deconv\1.conv2d."),
    (r"encoder\.0\.conv1\.", "conv1.conv2d."), (r"encoder\.3\.conv1\.", "conv2.conv2d."),
    (r"encoder\.6\.conv1\.", "conv3.conv2d."), (r"encoder\.1\.", "in1."),
    (r"encoder\.4\.", "in2."), (r"encoder\.7\.", "in3."),
    (r"decoder\.0\.conv1\.", "deconv1.conv2d."), (r"decoder\.3\.conv1\.", "deconv2.conv2d."),
    (r"decoder\.6\.conv1\.", "deconv3.conv2d."), (r"decoder\.1\.", "in4."), (r"decoder\.4\.", "in5."),
]


_LEGACY_RESIDUAL = re.compile(r"residual\.([0-4])\.(ConvLayer[12]\.conv1\.|norm[12]\.)(.+)")


# Old releases of the example saved InstanceNorm running statistics that nothing uses.
_UNUSED_KEY = re.compile(r"(^|\.)(running_mean|running_var|num_batches_tracked)$")


def _canonical_name(key: str) -> str:
    key = key.removeprefix("module.")  # saved from a DataParallel wrapper
    residual = _LEGACY_RESIDUAL.fullmatch(key)
    if residual:
        index, inner, rest = residual.groups()
        key = f"res{int(index) + 1}.{inner}{rest}"
    for pattern, replacement in _LEGACY_RENAMES:
        renamed, count = re.subn(f"^{pattern}", replacement, key)
        if count:
            return renamed
    return key


def to_transformer_state(state: object) -> dict[str, torch.Tensor]:
    """Our, the example's or the original repo's layout as our state_dict (fp32 tensors)."""
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a training checkpoint
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a conditional model
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError("it holds no state_dict")
    converted = {}
    for key, tensor in state.items():
        if _UNUSED_KEY.search(key):
            continue
        converted.setdefault(_canonical_name(key), tensor.float())
    return converted


def load_transformer(path: str | Path, device: torch.device | str = "cpu", arbitrary: bool = False) -> TransformerNet:
    """Load a TransformerNet in eval mode from any supported layout; never runs pickled code.

    A conditional model comes back as a ConditionalTransformerNet set to its first style. An arbitrary-style one
    comes back as an ArbitraryTransformerNet where the caller takes one (`arbitrary`: it predicts its styles
    from pictures, style_images.py); elsewhere it is refused in one line that says how to freeze it."""
    path = require_file(path, "model")
    try:
        raw = _load_weights(path)
        state = to_transformer_state(raw)
        settings = arbitrary_settings_of(raw)
        model = ArbitraryTransformerNet(**settings) if settings else network_for_state(state, _style_names(raw))
        _check_state(state, model.state_dict())
    except ValueError as exc:
        raise UserError(f"{path} is not a TransformerNet model: {exc}") from None
    if isinstance(model, ArbitraryTransformerNet) and not arbitrary:
        raise UserError(f"{path} is an arbitrary-style model, which needs a style picture: save its styles for given "
                        "pictures as a conditional model, which this takes, with render_image.py --style-image "
                        "A.jpg,B.jpg --save-conditional OUT.pth (see docs/styles.md)")
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def network_for_state(state: dict[str, torch.Tensor], style_names: list[str] | None = None) -> TransformerNet:
    """An untrained network of the kind `state` holds: plain, or conditional with its number of styles
    (named `style_names`, else style0, style1, ..., as in a training checkpoint)."""
    count, output_norm = style_count_of(state), state_has_output_norm(state)
    if count is None:
        return TransformerNet(output_norm)
    if style_names is None:
        style_names = [f"style{i}" for i in range(count)]
    if len(style_names) != count:
        raise ValueError(f"it names {len(style_names)} styles but holds {count}")
    return ConditionalTransformerNet(style_names, output_norm)


def _style_names(raw: object) -> list[str] | None:
    names = raw.get("style_names") if isinstance(raw, dict) else None
    if names is None:
        return None
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise ValueError("its style_names are not a list of names")
    return names


def _load_weights(path: Path) -> object:
    """torch.load with weights_only=True, its many failure messages turned into one short reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4 in the checkpoint"
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower():
            raise ValueError("it holds pickled objects other than tensors, which are refused "
                             "(nothing in it was run)") from None
        raise ValueError(f"not a file written by torch.save ({_first_line(exc)})") from None
    except Exception as exc:
        if "zip archive" in str(exc) or isinstance(exc, EOFError):
            raise ValueError("the file is truncated or corrupt") from None
        detail = "" if isinstance(exc, KeyError) else f" ({type(exc).__name__}: {_first_line(exc)})"
        raise ValueError(f"not a file written by torch.save{detail}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:120] if text else type(exc).__name__


def _check_state(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} of its {len(expected)} weights are missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unknown entries (e.g. {unexpected[0]})")
        raise ValueError(", ".join(parts))
    for key, tensor in expected.items():
        if state[key].shape != tensor.shape:
            raise ValueError(f"{key} has shape {list(state[key].shape)}, expected {list(tensor.shape)}")


def load_checkpoint(path: str | Path, model: torch.nn.Module | None = None) -> dict:
    """A training checkpoint whose model fits `model` (default: a plain TransformerNet); never runs pickled code."""
    path = require_file(path, "--resume")
    expected = (model or TransformerNet()).state_dict()
    try:
        checkpoint = _load_weights(path)  # never runs pickled code
        if not (isinstance(checkpoint, dict) and {"model", "optimizer", "step"} <= checkpoint.keys()
                and isinstance(checkpoint["model"], dict)):
            raise ValueError("it is not a training checkpoint of this suite")
        found, wanted = style_count_of(checkpoint["model"]), style_count_of(expected)
        if found != wanted:
            raise ValueError(f"it trains {_kind(found)}, this run {_kind(wanted)} (resume with the flags it was "
                             "started with)")
        _check_state(checkpoint["model"], expected)
    except ValueError as exc:
        raise UserError(f"--resume: {path} is not a usable checkpoint: {exc}") from None
    return checkpoint


def checkpoint_model_state(path: str | Path) -> dict:
    """A training checkpoint's model state, unchecked: to choose the network that load_checkpoint then checks it
    against. {} where the file holds none or is not a torch file (load_checkpoint says what is wrong with it); a
    missing file is the same one-line error as there."""
    try:
        checkpoint = _load_weights(require_file(path, "--resume"))
    except ValueError:
        return {}
    state = checkpoint.get("model") if isinstance(checkpoint, dict) else None
    return state if isinstance(state, dict) else {}


def _kind(style_count: int | None) -> str:
    return "a plain model" if style_count is None else f"a conditional model of {style_count} styles"


def command_line(script: str, argv: list[str] | None) -> str:
    """The command that ran a script, quoted so it can be pasted back into a shell."""
    argv = sys.argv[1:] if argv is None else argv
    return " ".join(shlex.quote(str(a)) for a in ["python", script, *argv])


def machine_description(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return f"{device.type}: {name}, {os.cpu_count()} cores, {platform.system()}, torch {torch.__version__}"


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"

