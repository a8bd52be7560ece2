"""The demo a new user gets in a fresh clone: bundled models, their provenance, render_image.sh and the figures."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import make_figures
import numpy as np
import pytest
from PIL import Image

import render_image

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
REQUIRED = ["all-styles.pth", "stained-glass.pth", "brush-strokes.pth", "blend.pth", "distilled.pth"]
ARBITRARY = "any-style.pth"  # an arbitrary-style model: rendered with a style picture (docs/styles.md)


def shipped_models() -> list[Path]:
    """The models the repository ships: those git tracks (a user's own models in models/ are not shipped)."""
    listed = subprocess.run(["git", "ls-files", "models"], cwd=ROOT, capture_output=True, text=True)
    tracked = [ROOT / name for name in listed.stdout.split() if name.endswith(".pth")] if listed.returncode == 0 else []
    return sorted(tracked) or sorted(MODELS.rglob("*.pth"))


SHIPPED = shipped_models()
PHOTO = ROOT / "images/content-images/coffee.jpg"


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), np.float64)


def test_every_demo_model_is_shipped_compactly():
    assert {p.name for p in SHIPPED} >= {*REQUIRED, ARBITRARY}
    assert len(SHIPPED) <= len(REQUIRED) + 1  # one conditional model instead of a model per blend weight
    fixed = [p for p in SHIPPED if p.name != ARBITRARY]
    assert sum(p.stat().st_size for p in fixed) < 18 * 1024 * 1024  # fp16 tensors: 3.4 MB each
    assert (MODELS / ARBITRARY).stat().st_size < 10 * 1024 * 1024


@pytest.mark.parametrize("name", REQUIRED)
def test_a_shipped_model_stylises_the_shipped_photo_at_its_size(tmp_path, name):
    output = tmp_path / "out.png"
    render_image.main(["--content-path", str(PHOTO), "--model-path", str(MODELS / name),
                       "--output-path", str(output), "--device", "cpu"])
    result, content = pixels(output), pixels(PHOTO)
    assert result.shape == content.shape
    assert np.abs(result - content).mean() > 20  # restyled, not the photo passed through


def test_the_arbitrary_model_stylises_the_shipped_photo_in_a_picture_it_never_saw(tmp_path):
    output = tmp_path / "out.png"
    picture = ROOT / "images/style-images/stained-glass.png"  # not among its training pictures
    render_image.main(["--content-path", str(PHOTO), "--model-path", str(MODELS / ARBITRARY), "--output-path",
                       str(output), "--device", "cpu", "--style-image", str(picture)])
    result, content = pixels(output), pixels(PHOTO)
    assert result.shape == content.shape
    assert np.abs(result - content).mean() > 20


@pytest.mark.parametrize("model", SHIPPED, ids=lambda p: p.name)
def test_each_shipped_model_has_provenance_naming_its_command(model):
    provenance = json.loads(model.with_suffix(".json").read_text())
    script = "distillation.py" if provenance["method"] == "distillation" else "train.py"
    assert provenance["command"].startswith(f"python {script} ")
    assert f"--savename {model.name}" in provenance["command"]
    assert provenance["steps"] > 0 and provenance["image_size"] > 0 and provenance["wall_time_s"] > 0
    assert provenance["machine"]
    # Never ImageNet here, and models/README.md says plainly which loss network made each model.
    assert provenance["vgg_weights"] in ("offline", "random")
    rows = [line for line in (MODELS / "README.md").read_text().splitlines()
            if line.startswith("| `") and f"{model.name}` |" in line]  # its row in the table of models
    assert rows and f"`{provenance['vgg_weights']}`" in rows[0], rows


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_render_image_sh_without_arguments_works_in_a_fresh_copy(tmp_path):
    stamp = Path(sys.prefix) / ".requirements.sha256"
    if not stamp.exists():
        pytest.skip("not running inside a venv made by setup_env.sh")
    clone = tmp_path / "fresh clone"
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    for name in tracked or []:
        if (ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, clone / name)
    for needed in ["render_image.sh", "render_image.py", "models/all-styles.pth",
                   "images/content-images/coffee.jpg"]:
        if not (clone / needed).exists():  # not committed yet: take it from the working tree
            (clone / needed).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / needed, clone / needed)
    environment = {**os.environ, "VENV_DIR": sys.prefix}  # the venv this suite runs in: no reinstall
    result = subprocess.run(["bash", "render_image.sh"], cwd=clone, env=environment, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    output = clone / "output/coffee-styled.jpg"
    assert str(output.relative_to(clone)) in result.stdout + result.stderr  # says where the result is
    assert pixels(output).shape == pixels(PHOTO).shape
    # the even mix of the conditional model's two styles, not either style alone
    styles = {}
    for index in range(2):
        render_image.main(["--content-path", str(PHOTO), "--model-path", str(MODELS / "all-styles.pth"),
                           "--output-path", str(tmp_path / f"style{index}.png"), "--style", str(index)])
        styles[index] = pixels(tmp_path / f"style{index}.png")
    mixed = pixels(output)
    assert all(np.abs(mixed - style).mean() > 5 for style in styles.values())


@pytest.mark.slow
def test_the_readme_figures_are_what_make_figures_regenerates(tmp_path):
    make_figures.main(["--output-dir", str(tmp_path)])
    committed = sorted((ROOT / "images/figures").glob("*.jpg"))
    # Figures that take minutes of training come from a script of their own, which the manual names.
    other_scripts = {"contact-sheet.jpg": "tools/make_contact_sheet.sh"}
    assert {p.name for p in committed} - other_scripts.keys() == {p.name for p in tmp_path.glob("*.jpg")} >= {
        "gallery.jpg", "methods.jpg", "interpolation.jpg", "temporal.jpg", "stroke-scale.jpg"}
    # The front page and the manual in docs/ together show every figure (docs/ links them as ../images/figures/).
    pages = "\n".join(page.read_text() for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    for script in other_scripts.values():
        assert (ROOT / script).is_file() and script in pages, f"{script} is missing or not named in the docs"
    for path in committed:
        assert f"images/figures/{path.name}" in pages, f"{path.name} is shown neither in README.md nor in docs/"
        if path.name in other_scripts:
            continue
        regenerated = pixels(tmp_path / path.name)
        assert regenerated.shape == pixels(path).shape
        assert np.abs(regenerated - pixels(path)).mean() < 1.5, path.name  # JPEG and CPU rounding only
