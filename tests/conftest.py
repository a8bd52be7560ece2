import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


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


def files_under(folder: Path) -> set[Path]:
    return {p.relative_to(folder) for p in folder.rglob("*")}
