"""Make the short demo clip from the project's own photos: a slow pan-and-zoom (Ken Burns) with a soft chord.

    python tools/make_demo_clip.py                          # writes images/demo-clip.mp4 (4 s, 480x320, 24 fps)
    python tools/make_demo_clip.py --images a.jpg b.jpg c.jpg --seconds 6 --output /tmp/clip.mp4

Each photo is one shot: the first zooms slowly in, the next pans upwards, and so on, with cross-fades between
shots. Every shot has its own chord, cross-faded with the pictures. The frames are piped raw to the ffmpeg
binary of the imageio-ffmpeg package (H.264 yuv420p + AAC); the same arguments and ffmpeg build give the same file.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import wave
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
from PIL import Image

DEFAULT_IMAGES = [Path("images/content-images/coffee.jpg"), Path("images/content-images/rocket.jpg")]
SAMPLE_RATE = 44100
CROSSFADE_S = 0.6
FADE_IN_S, FADE_OUT_S = 0.4, 0.6

# One chord per shot, in Hz, cycled if there are more shots: Cmaj7, Fmaj7, G6, Am7.
CHORDS = [
    [130.81, 261.63, 329.63, 392.00, 493.88],
    [87.31, 174.61, 220.00, 261.63, 329.63],
    [98.00, 196.00, 246.94, 293.66, 329.63],
    [110.00, 220.00, 261.63, 329.63, 392.00],
]

Rect = tuple[float, float, float, float]  # x, y, width, height in source pixels


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def fitted_rect(height: int, width: int, aspect: float) -> Rect:
    """The largest centred rectangle of the given width/height ratio inside the image."""
    w = min(width, height * aspect)
    h = w / aspect
    return (width - w) / 2, (height - h) / 2, w, h


def shot_path(index: int, height: int, width: int, aspect: float) -> tuple[Rect, Rect]:
    """Start and end view of shot `index`: even shots zoom in on the middle, odd ones pan up while zooming a little."""
    x, y, w, h = fitted_rect(height, width, aspect)
    if index % 2 == 0:
        return (x, y, w, h), (x + 0.15 * w, y + 0.15 * h, 0.7 * w, 0.7 * h)
    start = (x + 0.05 * w, y + 0.1 * h, 0.9 * w, 0.9 * h)  # bottom of the picture
    end = (x + 0.125 * w, y, 0.75 * w, 0.75 * h)  # top of the picture
    return start, end


def shot_weights(times: np.ndarray, shots: int, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """For every time: each shot's weight (summing to 1, linear cross-fades) and its progress through the shot."""
    length = (seconds + (shots - 1) * CROSSFADE_S) / shots
    starts = np.arange(shots)[:, None] * (length - CROSSFADE_S)
    fade_in = np.clip((times - starts) / CROSSFADE_S, 0, 1)
    fade_out = np.clip((starts + length - times) / CROSSFADE_S, 0, 1)
    fade_in[0], fade_out[-1] = 1, 1
    weights = np.where((times >= starts) & (times <= starts + length), fade_in * fade_out, 0.0)
    progress = np.clip((times - starts) / length, 0, 1)
    return weights, progress


def master_envelope(times: np.ndarray, seconds: float) -> np.ndarray:
    """Fade in from black/silence at the start and out at the end (smooth, sine-shaped ramps)."""
    ramp = np.minimum(np.clip(times / FADE_IN_S, 0, 1), np.clip((seconds - times) / FADE_OUT_S, 0, 1))
    return np.sin(ramp * np.pi / 2) ** 2


def render_view(image: np.ndarray, rect: Rect, size: tuple[int, int]) -> np.ndarray:
    """Resample the `rect` part of the image to `size` (width, height), with sub-pixel precision."""
    x, y, w, h = rect
    to_source = np.array([[w / size[0], 0, x], [0, h / size[1], y]], np.float64)
    return cv2.warpAffine(image, to_source, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT)


def frames(images: list[np.ndarray], size: tuple[int, int], fps: int, seconds: float) -> Iterator[np.ndarray]:
    """Yield the clip's RGB frames (uint8, height x width x 3)."""
    aspect = size[0] / size[1]
    paths = [shot_path(i, *image.shape[:2], aspect) for i, image in enumerate(images)]
    times = np.arange(round(fps * seconds)) / fps
    weights, progress = shot_weights(times, len(images), seconds)
    brightness = master_envelope(times, seconds)
    for f in range(len(times)):
        frame = np.zeros((size[1], size[0], 3), np.float32)
        for i, (image, (start, end)) in enumerate(zip(images, paths, strict=True)):
            if weights[i, f] > 0:
                p = progress[i, f] ** 2 * (3 - 2 * progress[i, f])  # ease in and out
                rect = tuple(a + p * (b - a) for a, b in zip(start, end, strict=True))
                frame += weights[i, f] * render_view(image, rect, size)
        yield np.clip(frame * brightness[f], 0, 255).round().astype(np.uint8)


def soundtrack(shots: int, seconds: float) -> np.ndarray:
    """A soft stereo pad: each shot's chord as gently beating sine tones, cross-faded like the pictures."""
    times = np.arange(round(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    weights, _ = shot_weights(times, shots, seconds)
    left, right = np.zeros_like(times), np.zeros_like(times)
    for i in range(shots):
        for n, freq in enumerate(CHORDS[i % len(CHORDS)]):
            loudness = np.sqrt(weights[i]) / (1 + 0.5 * n)  # equal-power cross-fade; upper notes softer
            left += loudness * np.sin(2 * np.pi * freq * times)
            right += loudness * np.sin(2 * np.pi * freq * 1.002 * times + n)  # slight detune: a slow shimmer
    stereo = np.stack([left, right], axis=1) * master_envelope(times, seconds)[:, None]
    return stereo * (0.3 / np.abs(stereo).max())


def write_wav(samples: np.ndarray, path: Path) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(samples.shape[1])
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes((samples * 32767).round().astype("<i2").tobytes())


def encode(frame_iter: Iterable[np.ndarray], wav_path: Path, output: Path, size: tuple[int, int], fps: int,
           crf: int) -> None:
    """Pipe raw frames to ffmpeg and mux them with the WAV as H.264 + AAC in MP4."""
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size[0]}x{size[1]}", "-r", str(fps), "-i", "-",
        "-i", str(wav_path),
        "-c:v", "libx264", "-preset", "slow", "-crf", str(crf), "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "96k", "-movflags", "+faststart", "-f", "mp4", str(output),
    ]
    process = subprocess.Popen(command, stdin=subprocess.PIPE)
    try:
        for frame in frame_iter:
            process.stdin.write(frame.tobytes())
    except BrokenPipeError:
        pass  # ffmpeg stopped early; its own message and exit status tell why
    finally:
        process.stdin.close()
    if process.wait() != 0:
        sys.exit(f"error: ffmpeg failed (exit status {process.returncode}) writing {output}")


def frame_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 480x320 (got {text!r})") from None
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise argparse.ArgumentTypeError(f"width and height must be even and at least 16 (got {text!r})")
    return width, height


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--images", type=Path, nargs="+", default=DEFAULT_IMAGES, metavar="IMAGE",
                        help="one photo per shot (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=Path("images/demo-clip.mp4"),
                        help="the .mp4 to write (default: %(default)s)")
    parser.add_argument("--size", type=frame_size, default=(480, 320), metavar="WxH",
                        help="frame size, even numbers (default: 480x320)")
    parser.add_argument("--fps", type=int, choices=range(1, 121), default=24, metavar="FPS",
                        help="frames per second, 1 to 120 (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of the clip (default: %(default)s)")
    parser.add_argument("--crf", type=int, choices=range(52), default=20, metavar="CRF",
                        help="H.264 quality, 0 (lossless) to 51 (worst) (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    missing = [str(p) for p in args.images if not p.is_file()]
    if missing:
        sys.exit(f"error: --images: no such file: {', '.join(missing)}")
    shortest = len(args.images) * CROSSFADE_S + FADE_IN_S + FADE_OUT_S
    if args.seconds < shortest:
        sys.exit(f"error: --seconds {args.seconds:g} is too short for {len(args.images)} shots (at least {shortest:g})")
    images = [load_rgb(p) for p in args.images]

    args.output.parent.mkdir(parents=True, exist_ok=True)
    temp_output = args.output.with_name(f".{args.output.stem}.{os.getpid()}.tmp.mp4")  # same folder: atomic rename
    try:
        with tempfile.TemporaryDirectory() as temp_dir:
            wav_path = Path(temp_dir) / "soundtrack.wav"
            write_wav(soundtrack(len(images), args.seconds), wav_path)
            encode(frames(images, args.size, args.fps, args.seconds), wav_path, temp_output, args.size, args.fps,
                   args.crf)
        os.replace(temp_output, args.output)
    finally:
        temp_output.unlink(missing_ok=True)
    print(f"{args.output} ({args.output.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
