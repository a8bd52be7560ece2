import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))  # the asset scripts
sys.path.insert(0, str(ROOT / "benchmarks"))  # benchmark.py

from transformer_net import TransformerNet  # noqa: E402  (after the path above)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `cuda` are skipped, with the reason shown, where no CUDA device is present."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none present)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def one_random_vgg_per_process():
    """Build the seeded random VGG16 once per test process (it is the slowest part of a tiny training run);
    each caller still gets a copy of its own, with the usual warning."""
    import copy

    import benchmark
    import distillation
    import train
    import vgg

    build, built = vgg.load_vgg16, {}

    def load_vgg16(weights: str = "imagenet"):
        if weights != "random":
            return build(weights)
        if "random" not in built:
            built["random"] = build("random")
        else:
            vgg.warn("--vgg-weights random: the loss network is untrained, so results will not be artistic")
        return copy.deepcopy(built["random"])

    modules = (vgg, train, distillation, benchmark)  # the scripts hold the name itself
    for module in modules:
        module.load_vgg16 = load_vgg16
    yield
    for module in modules:
        module.load_vgg16 = build


def random_model(seed: int = 0, gain: float = 30.0, bias: float | tuple[float, float, float] = 128.0) -> TransformerNet:
    """A seeded random network whose output spans the 0-255 range around `bias`, like a trained one
    (an untrained one gives near-black)."""
    torch.manual_seed(seed)
    model = TransformerNet().eval()
    with torch.no_grad():
        model.deconv3.conv2d.weight.mul_(gain)
        model.deconv3.conv2d.bias.copy_(torch.as_tensor(bias, dtype=torch.float32).expand(3))
    return model


def save_random_model(path: Path, seed: int = 0, gain: float = 30.0,
                      bias: float | tuple[float, float, float] = 128.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(random_model(seed, gain, bias).state_dict(), path)
    return path


def save_random_conditional_model(path: Path, names: tuple[str, ...] = ("warm", "cold"), seed: int = 0) -> Path:
    """random_model(seed) as a conditional model (model_files.save_model) whose styles clearly differ: style i
    has its own scales and shifts in every norm layer."""
    from style_transfer.conditional_net import ConditionalTransformerNet, conditional_state
    from style_transfer.model_files import save_model

    model = ConditionalTransformerNet(names)
    model.load_state_dict(conditional_state(random_model(seed).state_dict(), len(names)))
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for norm in model.norms:
            norm.weight.mul_(0.5 + torch.rand(norm.weight.shape, generator=generator))
            norm.bias.add_(torch.randn(norm.bias.shape, generator=generator))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(model.eval(), path, {"script": "tests"})
    return path


def load_state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


def train_args(dataset_dir: Path, out: Path, styles: list[Path], *extra: str) -> list[str]:
    """train.py's flags for a tiny offline CPU run writing under `out` (models/, logs/, checkpoints/)."""
    return ["--datapath", str(dataset_dir), "--stylepath", ",".join(map(str, styles)),
            "--vgg-weights", "random", "--image-size", "32", "--batch-size", "2", "--device", "cpu",
            "--save-dir", str(out / "models"), "--log-dir", str(out / "logs"),
            "--checkpoint-dir", str(out / "checkpoints"), "--log-interval", "1", *extra]


FLOAT64_TRAIN = """import os, sys
sys.path.insert(0, {root!r})
import torch
torch.set_default_dtype(torch.float64)  # weights, images and losses in float64
if os.environ.get("BREAK_GRADIENT_SYNC"):  # the broken run the test must tell apart: DDP left out
    torch.nn.parallel.DistributedDataParallel = lambda module, **kwargs: module
import train, utils
utils.run_main(train.main)
"""


def train_float64(tmp_path: Path, out: Path, photos: Path, style: Path, *flags: object, processes: int = 1,
                  broken: bool = False, device: str = "cpu") -> Path:
    """train.py in float64 on `photos`, in 1 process or under torchrun, writing under `out` (a model m.pth, its log).

    In float64, runs that should take the same steps end with the same weights (to 1e-5 after a few steps): in
    float32 the order of summation (an all-reduce, a GPU's atomics) can change a weight by about one Adam step
    (the learning rate), because where a gradient is near zero Adam's m/sqrt(v) turns rounding noise into a
    full-size step; in float64 that noise is far below Adam's eps."""
    script = tmp_path / "train_float64.py"
    script.write_text(FLOAT64_TRAIN.format(root=str(ROOT)))
    launch = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] if processes > 1 else []
    command = [*launch, script, "--datapath", photos, "--stylepath", style, "--vgg-weights", "random", "--image-size",
               "32", "--device", device, "--log-interval", "1", "--precision", "fp32", "--savename", "m.pth",
               "--save-dir", out / "models", "--log-dir", out / "logs", "--checkpoint-dir", out / "checkpoints", *flags]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **({"BREAK_GRADIENT_SYNC": "1"} if broken else {})}
    result = subprocess.run([sys.executable, *map(str, command)], cwd=tmp_path, capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def logged_losses(out: Path) -> list[dict]:
    with open(out / "logs/m.csv") as log:
        return [{k: v for k, v in row.items() if k != "elapsed_s"} for row in csv.DictReader(log)]


def largest_difference(a: Path, b: Path) -> float:
    first, second = (torch.load(out / "models/m.pth", weights_only=True) for out in (a, b))
    assert first.keys() == second.keys() and all(t.dtype == torch.float64 for t in first.values())
    return max((first[k] - second[k]).abs().max().item() for k in first)


def write_noise_image(path: Path, height: int, width: int, seed: int, mode: str = "RGB") -> Path:
    """A smooth random image (blurred noise), so it compresses and looks like something."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC).convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    """Six small photos of different sizes, one of them in a subfolder (as COCO's train2017/)."""
    folder = tmp_path / "photos dir"
    for i in range(5):
        write_noise_image(folder / f"img{i}.jpg", 40 + 6 * i, 48, seed=i)
    write_noise_image(folder / "train2017" / "nested.png", 50, 40, seed=9)
    return folder


@pytest.fixture
def style_files(tmp_path: Path) -> list[Path]:
    return [write_noise_image(tmp_path / "styles" / f"style {i}.png", 48, 48, seed=100 + i) for i in range(3)]


def run_script(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def assert_clean_failure(result: subprocess.CompletedProcess, *expected: str) -> None:
    """Non-zero exit, no traceback, and exactly one `error:` line on stderr that mentions `expected`."""
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for text in expected:
        assert text in errors[0], errors[0]


def assert_usage_error(result: subprocess.CompletedProcess, *expected: str) -> None:
    """The flag parser's refusal of a value: status 2 and stderr is one `error:` line naming it."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--help" in lines[0], result.stderr
    for text in expected:
        assert text in lines[0], lines[0]


def files_under(folder: Path) -> set[Path]:
    return {p.relative_to(folder) for p in folder.rglob("*")}


def run_main_in_process(capsys: pytest.CaptureFixture, main, *args: object) -> subprocess.CompletedProcess:
    """Run a script's main() the way its command line does (utils.run_main), but in this process, so that a
    test can monkeypatch it: the exit status and its stdout and stderr. An exception that run_main does not
    turn into an `error:` line propagates (on the command line it would end in a traceback)."""
    import utils

    capsys.readouterr()  # only this run's output
    previous = signal.getsignal(signal.SIGTERM)  # run_main installs its own handler
    try:
        utils.run_main(main, [str(a) for a in args])
        status = 0
    except SystemExit as exc:  # run_main's status for a UserError, or argparse's for a bad flag
        status = exc.code
    finally:
        signal.signal(signal.SIGTERM, previous)
    output = capsys.readouterr()
    return subprocess.CompletedProcess(args, status, output.out, output.err)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random plain model saved once per test module, at a path with a space in it."""
    return save_random_model(tmp_path_factory.mktemp("model") / "my model.pth")


def fail_the_network(monkeypatch: pytest.MonkeyPatch, runtime: str, error: BaseException) -> None:
    """Make the rendering network raise `error` when it runs, on `runtime` (torch or openvino: the OpenVINO
    network is exported from the PyTorch one, so there only its call fails)."""
    def fail(*args, **kwargs):
        raise error

    if runtime == "openvino":
        pytest.importorskip("openvino")
        pytest.importorskip("onnx")
        from style_transfer import openvino_runtime

        monkeypatch.setattr(openvino_runtime.OpenVinoNetwork, "__call__", fail)
    else:
        from transformer_net import TransformerNet

        monkeypatch.setattr(TransformerNet, "forward", fail)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A random plain model and a random two-style conditional one (styles warm, cold), saved once per module."""
    folder = tmp_path_factory.mktemp("models")
    return {"conditional": save_random_conditional_model(folder / "warm and cold.pth"),
            "plain": save_random_model(folder / "plain.pth")}


def video_frames(path: Path) -> list[np.ndarray]:
    """Every frame of a video, decoded by OpenCV, as H x W x 3 RGB int16 (differences need no casts)."""
    capture = cv2.VideoCapture(str(path))
    decoded = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return decoded
        decoded.append(frame[..., ::-1].astype(np.int16))
