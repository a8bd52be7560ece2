"""export.py: ONNX files that ONNX Runtime runs as render_image.py renders (every kind of model, tiny and odd sizes,
one file for every size), fp16 files, the style as a second input, provenance, nothing half-written, bad input in
one line, and the docs' example run exactly as written."""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import export
import render_image
from conftest import (
    ROOT,
    assert_clean_failure,
    run_main_in_process,
    write_noise_image,
)
from style_transfer import onnx_export

onnxruntime = pytest.importorskip("onnxruntime")

# (height, width) of the images each file is run at: one file, several sizes, none of them multiples of 4.
SIZES = [(13, 17), (5, 3)]
BATCH_SIZE = (32, 24)  # a batch of two images of this size


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("photos")
    single = [write_noise_image(folder / f"single{h}x{w}.png", h, w, seed=h) for h, w in SIZES]
    pair = [write_noise_image(folder / f"pair{i}.png", *BATCH_SIZE, seed=10 + i) for i in range(2)]
    return single + pair


def load(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32).transpose(2, 0, 1)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.round(a) - np.round(b)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def reference(capsys, tmp_path: Path, model: Path, photo: Path, *style: str) -> np.ndarray:
    """render_image.py's fp32 render of `photo`, as C x H x W in 0-255."""
    out = tmp_path / f"ref-{photo.stem}-{len(list(tmp_path.glob('ref-*')))}.png"
    result = run_main_in_process(capsys, render_image.main, "--content-path", photo, "--model-path", model,
                                 "--output-path", out, "--precision", "fp32", "--device", "cpu", *style)
    assert result.returncode == 0, result.stderr
    return load(out)


def run_onnx(path: Path, batch: np.ndarray, style_mix: list[list[float]] | None = None) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {"input": batch}
    if style_mix is not None:
        feeds["style_mix"] = np.asarray(style_mix, dtype=np.float32)
    (output,) = session.run(None, feeds)
    assert output.shape == batch.shape and output.dtype == np.float32
    return np.clip(output, 0, 255)


def export_ok(capsys, *args: object) -> subprocess.CompletedProcess:
    result = run_main_in_process(capsys, export.main, *args)
    assert result.returncode == 0, result.stderr
    return result


CASES = {
    "plain": ("plain", [], []),
    "plain fp16": ("plain", ["--fp16"], []),
    "baked style": ("conditional", ["--style", "cold"], ["--style", "cold"]),
    "baked mix": ("conditional", ["--style-mix", "1,3"], ["--style-mix", "1,3"]),
    "baked mix fp16": ("conditional", ["--style-mix", "3,1", "--fp16"], ["--style-mix", "3,1"]),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_onnx_runtime_renders_as_render_image_does_at_odd_sizes_from_one_file(tmp_path, capsys, models, photos, case):
    kind, flags, style = CASES[case]
    path = tmp_path / "model.onnx"
    export_ok(capsys, "--model-path", models[kind], "--output-path", path, *flags)
    least = 40 if "--fp16" in flags else 50
    for photo in photos[:len(SIZES)]:
        expected = reference(capsys, tmp_path, models[kind], photo, *style)
        assert psnr(run_onnx(path, load(photo)[None])[0], expected) >= least, photo.name
    pair = np.stack([load(p) for p in photos[len(SIZES):]])
    result = run_onnx(path, pair)
    for image, photo in zip(result, photos[len(SIZES):], strict=True):
        assert psnr(image, reference(capsys, tmp_path, models[kind], photo, *style)) >= least


def test_a_style_input_file_mixes_at_run_time(tmp_path, capsys, models, photos):
    """One file, two different mixes fed at run time (and one mix per image), each as render_image.py renders
    it; the weights are normalised inside the graph, as --style-mix normalises them."""
    path = tmp_path / "styles.onnx"
    export_ok(capsys, "--model-path", models["conditional"], "--output-path", path, "--style-input")
    photo, pair = photos[0], photos[len(SIZES):]
    outputs = []
    for weights in ([1, 3], [2, 0]):
        expected = reference(capsys, tmp_path, models["conditional"], photo, "--style-mix", ",".join(map(str, weights)))
        outputs.append(run_onnx(path, load(photo)[None], [weights])[0])
        assert psnr(outputs[-1], expected) >= 50
    assert psnr(outputs[0], outputs[1]) < 30  # the mix really is an input
    per_image = run_onnx(path, np.stack([load(p) for p in pair]), [[1, 0], [0, 1]])
    for image, photo_path, style in zip(per_image, pair, ["warm", "cold"], strict=True):
        assert psnr(image, reference(capsys, tmp_path, models["conditional"], photo_path, "--style", style)) >= 50


def test_the_file_has_dynamic_sizes_its_opset_and_provenance_and_no_temporary_file(tmp_path, capsys, models):
    import onnx

    path = tmp_path / "out" / "mix.onnx"
    result = export_ok(capsys, "--model-path", models["conditional"], "--output-path", path, "--style-mix", "1,1")
    assert sorted(p.name for p in path.parent.iterdir()) == ["mix.json", "mix.onnx"]
    assert "wrote" in result.stdout
    model = onnx.load(str(path))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [onnx_export.OPSET]
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata["style_names"] == '["warm", "cold"]' and metadata["style_mix"] == "[0.5, 0.5]"
    provenance = json.loads(path.with_suffix(".json").read_text())
    assert provenance["script"] == "export.py" and provenance["opset"] == onnx_export.OPSET
    assert provenance["style_mix"] == [0.5, 0.5] and provenance["model_provenance"] == {"script": "tests"}
    assert provenance["check"]["shape"] == list(onnx_export.CHECK_SHAPE)


def test_a_failure_inside_the_exporter_leaves_nothing_and_an_older_file_untouched(tmp_path, capsys, models,
                                                                                  monkeypatch):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"older file")

    def half_written(model, args, f, **kwargs):
        Path(f).write_bytes(b"half an onnx file")
        raise RuntimeError("simulated exporter failure\nwith a second line")

    monkeypatch.setattr(torch.onnx, "export", half_written)
    result = run_main_in_process(capsys, export.main, "--model-path", models["plain"], "--output-path", path)
    assert_clean_failure(result, "torch.onnx.export failed (simulated exporter failure)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    assert path.read_bytes() == b"older file"


def test_a_file_that_fails_the_check_is_not_written(tmp_path, capsys, models, monkeypatch):
    monkeypatch.setitem(onnx_export.MIN_PSNR_DB, False, 1000.0)
    path = tmp_path / "model.onnx"
    result = run_main_in_process(capsys, export.main, "--model-path", models["plain"], "--output-path", path)
    assert_clean_failure(result, "differs from PyTorch's", "nothing was written")
    assert list(tmp_path.iterdir()) == []


BAD = {
    "not a model": (lambda m, t: ["--model-path", (t / "x.pth").write_text("not a model") and t / "x.pth"],
                    "is not a TransformerNet model"),
    "missing model": (lambda m, t: ["--model-path", t / "missing.pth"], "no such file"),
    "unknown style": (lambda m, t: ["--model-path", m["conditional"], "--style", "hot"], "--style: no style 'hot'"),
    "bad mix count": (lambda m, t: ["--model-path", m["conditional"], "--style-mix", "1,2,3"],
                      "--style-mix: 3 weights given"),
    "negative mix": (lambda m, t: ["--model-path", m["conditional"], "--style-mix", "1,-1"], "non-negative"),
    "mix on a plain model": (lambda m, t: ["--model-path", m["plain"], "--style-mix", "1,1"], "plain model"),
    "style input, plain model": (lambda m, t: ["--model-path", m["plain"], "--style-input"],
                                 "--style-input: ", "plain model"),
    "style input and a style": (lambda m, t: ["--model-path", m["conditional"], "--style-input", "--style", "0"],
                                "not both"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_is_one_clear_line_and_writes_nothing(tmp_path, capsys, models, case):
    flags, *expected = BAD[case]
    out = tmp_path / "out"
    result = run_main_in_process(capsys, export.main, *flags(models, tmp_path), "--output-path", out / "m.onnx")
    assert_clean_failure(result, *expected)
    assert not out.exists()


@pytest.mark.parametrize("output,expected", [("blocker/m.onnx", "cannot write"), ("m.pth", "does not end in .onnx"),
                                             ("folder.onnx", "is a folder")],
                         ids=["unwritable", "not .onnx", "a folder"])
def test_an_output_that_cannot_be_written_is_one_clear_line(tmp_path, capsys, models, output, expected):
    (tmp_path / "blocker").write_text("a file where the folder should be")
    (tmp_path / "folder.onnx").mkdir()
    before = sorted(tmp_path.rglob("*"))
    result = run_main_in_process(capsys, export.main, "--model-path", models["plain"], "--output-path",
                                 tmp_path / output)
    assert_clean_failure(result, expected)
    assert sorted(tmp_path.rglob("*")) == before


BLOCKED_IMPORT = """import sys
class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}")
sys.meta_path.insert(0, Missing())
sys.path.insert(0, {root!r})
import export, utils
utils.run_main(export.main)
"""


@pytest.mark.parametrize("blocked,expected", [("onnxruntime", "needs onnxruntime"), ("onnx", "needs the onnx package")])
def test_a_missing_onnx_package_is_one_clear_line(tmp_path, models, blocked, expected):
    script = tmp_path / "blocked.py"
    script.write_text(BLOCKED_IMPORT.format(blocked=blocked, root=str(ROOT)))
    out = tmp_path / "out" / "m.onnx"
    result = subprocess.run([sys.executable, str(script), "--model-path", str(models["plain"]), "--output-path",
                             str(out)], capture_output=True, text=True, timeout=300)
    assert_clean_failure(result, expected)
    assert not out.parent.exists()


def test_without_onnxruntime_no_check_still_exports(tmp_path, models):
    script = tmp_path / "blocked.py"
    script.write_text(BLOCKED_IMPORT.format(blocked="onnxruntime", root=str(ROOT)))
    out = tmp_path / "m.onnx"
    result = subprocess.run([sys.executable, str(script), "--model-path", str(models["plain"]), "--output-path",
                             str(out), "--no-check"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert out.is_file() and out.with_suffix(".json").is_file()


def docs_example() -> str:
    text = (ROOT / "docs/export.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- the test tests/test_export.py runs exactly this block -->\n```python\n(.*?)```",
                      text, re.S)
    assert match, "docs/export.md lost its example"
    return match.group(1)


def test_the_docs_example_runs_as_written_without_the_suite(tmp_path, capsys, models):
    """The ten lines of docs/export.md, in a fresh process that cannot import this suite, give render_image.py's
    result."""
    code = docs_example()
    assert len(code.strip().splitlines()) <= 10
    export_ok(capsys, "--model-path", models["plain"], "--output-path", tmp_path / "blend.onnx")
    photo = write_noise_image(tmp_path / "photo.jpg", 21, 30, seed=3)
    (tmp_path / "example.py").write_text(code)
    result = subprocess.run([sys.executable, "-I", "example.py"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    expected = reference(capsys, tmp_path, models["plain"], photo)
    assert psnr(load(tmp_path / "stylised.png"), expected) >= 50


def test_a_kind_of_network_the_exporter_does_not_know_is_refused_in_one_line():
    """A subclass it does not know is refused, not exported as if it were plain."""
    from transformer_net import TransformerNet
    from utils import UserError

    class OtherNet(TransformerNet):
        pass

    with pytest.raises(UserError, match="exporting a OtherNet is not supported yet"):
        onnx_export.model_kind(OtherNet())


@pytest.fixture(scope="module")
def arbitrary_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained arbitrary-style model whose predictions differ from picture to picture (a scaled-up head)."""
    from style_transfer import arbitrary_net, loss_network, model_files

    statistics = arbitrary_net.probe_statistics(loss_network.load_loss_network("offline"))
    torch.manual_seed(0)
    model = arbitrary_net.ArbitraryTransformerNet("offline", statistics.shape[1],
                                                  arbitrary_net.fingerprint_of(statistics), style_size=40,
                                                  output_norm=True)
    with torch.no_grad():
        model.predictor.head.weight.mul_(60)
    path = tmp_path_factory.mktemp("arbitrary") / "any.pth"
    model_files.save_model(model, path, {"script": "tests/test_export.py"})
    return path


@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
def test_an_arbitrary_model_exports_its_network_and_predictor_and_renders_as_render_image(tmp_path, capsys, photos,
                                                                                        arbitrary_model, fp16):
    """Two files: the predictor turns a picture into style_params, the network takes them as its second input; the
    pair renders what render_image.py --style-image renders (fp32 >= 50 dB, fp16 >= 40 dB), and two pictures give
    two different styles."""
    from style_transfer import arbitrary_net, image_io

    path = tmp_path / "any.onnx"
    export_ok(capsys, "--model-path", arbitrary_model, "--output-path", path, *(["--fp16"] if fp16 else []))
    assert {p.name for p in tmp_path.iterdir()} == {"any.onnx", "any.predictor.onnx", "any.json"}
    assert json.loads((tmp_path / "any.json").read_text())["predictor"] == "any.predictor.onnx"
    predictor = onnxruntime.InferenceSession(str(tmp_path / "any.predictor.onnx"), providers=["CPUExecutionProvider"])
    network = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    from PIL import Image

    pictures = [write_noise_image(tmp_path / "noise.png", 50, 64, seed=40), tmp_path / "red.png"]
    Image.new("RGB", (64, 57), (230, 40, 20)).save(pictures[1])
    outputs = []
    for picture in pictures:
        style = arbitrary_net.style_tensor(image_io.load_rgb(picture), 40).numpy()  # as render_image.py reads it
        (params,) = predictor.run(None, {"style_image": style})
        photo = photos[0]
        (output,) = network.run(None, {"input": load(photo)[None], "style_params": params})
        expected = reference(capsys, tmp_path, arbitrary_model, photo, "--style-image", str(picture))
        assert psnr(np.clip(output[0], 0, 255), expected) >= (40 if fp16 else 50)
        outputs.append(np.clip(output[0], 0, 255))
    assert psnr(outputs[0], outputs[1]) < 40  # the pictures' styles differ by more than the files' rounding


def test_an_arbitrary_model_takes_no_baked_style_in_one_line(tmp_path, capsys, arbitrary_model):
    result = run_main_in_process(capsys, export.main, "--model-path", arbitrary_model, "--output-path",
                                 tmp_path / "any.onnx", "--style", "0")
    assert_clean_failure(result, "is an arbitrary-style model, whose styles come from pictures at run time")
    assert list(tmp_path.iterdir()) == []
