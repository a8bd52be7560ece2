"""The bundled demo assets a new user relies on: photos, style images, the demo clip and the scripts behind them."""

import re
import subprocess
from pathlib import Path

import imageio_ffmpeg
import make_style_images
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "images"
CONTENT_IMAGES = sorted((IMAGES / "content-images").glob("*.jpg"))
STYLE_IMAGES = [IMAGES / "style-images" / "stained-glass.png", IMAGES / "style-images" / "brush-strokes.jpg"]
DEMO_CLIP = IMAGES / "demo-clip.mp4"


def test_content_images_are_small_rgb_photos_with_a_recorded_licence():
    assert len(CONTENT_IMAGES) >= 2
    readme = (IMAGES / "README.md").read_text()
    for path in CONTENT_IMAGES:
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.mode == "RGB", path
            assert image.width * image.height <= 1_050_000, path
        assert path.name in readme, f"{path.name}: source and licence not recorded in images/README.md"


def test_style_images_exist_and_differ_clearly_in_colour():
    means = []
    for path in STYLE_IMAGES:
        assert path.stat().st_size < 300 * 1024, path
        with Image.open(path) as image:
            assert image.mode == "RGB" and min(image.size) >= 256, path
            means.append(np.asarray(image, np.float64).reshape(-1, 3).mean(axis=0))
    assert np.linalg.norm(means[0] - means[1]) > 40, means


def test_make_style_images_is_reproducible(tmp_path):
    for folder in ["a", "b"]:
        make_style_images.main(["--size", "48", "--seed", "7", "--out-dir", str(tmp_path / folder)])
    for path in STYLE_IMAGES:
        first, second = tmp_path / "a" / path.name, tmp_path / "b" / path.name
        assert first.read_bytes() == second.read_bytes(), path.name
        with Image.open(first) as image:
            assert image.size == (48, 48) and image.mode == "RGB"
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(p.name for p in STYLE_IMAGES)


def test_demo_clip_has_video_and_audio_and_is_small():
    assert DEMO_CLIP.stat().st_size < 1024 * 1024
    # `ffmpeg -i` with no output describes the streams on stderr and exits non-zero; that is expected.
    info = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(DEMO_CLIP)],
                          capture_output=True, text=True, timeout=60).stderr
    assert re.search(r"Stream #\S+: Video: h264 .*yuv420p.*, 24 fps", info), info
    assert re.search(r"Stream #\S+: Audio: aac ", info), info
    hours, minutes, seconds = re.search(r"Duration: (\d+):(\d+):([\d.]+)", info).groups()
    assert 2 <= int(hours) * 3600 + int(minutes) * 60 + float(seconds) <= 10, info
