"""Video files: probing (size, exact frame rate, sound), decoding frames in a background thread, and
encoding H.264 through ffmpeg with the source's sound (OpenCV's writer where ffmpeg is missing)."""

import contextlib
import math
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from utils import UserError, warn

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".avi"}


X264_PRESETS = ["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"]


def find_ffmpeg() -> str | None:
    """The ffmpeg binary inside the imageio-ffmpeg wheel, else one on the PATH, else None."""
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return shutil.which("ffmpeg")


@dataclass
class VideoInfo:
    width: int  # of the frames as OpenCV decodes them (upright)
    height: int
    fps: Fraction
    frames: int | None  # the video stream's count, an estimate in some files (see probe_video); None if unknown
    audio: str | None  # the first audio stream's codec; None without audio (or without ffmpeg)
    sar: Fraction | None = None  # the sample (pixel) aspect ratio where it is not 1:1 (anamorphic video)


def probe_video(path: Path, ffmpeg: str | None) -> VideoInfo:
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # we report unreadable files ourselves
    capture = cv2.VideoCapture(str(path))
    try:
        ok, frame = capture.read() if capture.isOpened() else (False, None)
        if not ok:
            raise UserError(f"cannot read video {path}: OpenCV cannot decode it (not a video, or damaged)")
        cv_fps, frames = capture.get(cv2.CAP_PROP_FPS), int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    text = ""
    if ffmpeg:  # `ffmpeg -i` describes the streams on stderr (and fails for want of an output)
        text = subprocess.run([ffmpeg, "-hide_banner", "-i", str(path)], capture_output=True, text=True,
                              errors="replace", stdin=subprocess.DEVNULL).stderr
    audio = re.search(r"Stream #\S+.*?: Audio: (\w+)", text)
    video = _video_stream(text)
    listed_fps = re.search(r": Video: .*?([\d.]+) (?:fps|tbr)", video)
    fps = _frame_rate([cv_fps, float(listed_fps.group(1)) if listed_fps else 0.0])
    # OpenCV counts from the container's duration where the stream does not say its count (Matroska, WebM):
    # a sound that outlasts the picture inflates it. There, the video stream's own DURATION tag says it.
    duration = re.search(r"^\s+DURATION\s*: (\d+):(\d+):([\d.]+)", video, re.M)
    if duration:
        hours, minutes, seconds = duration.groups()
        frames = round((3600 * int(hours) + 60 * int(minutes) + float(seconds)) * fps)
    sar = re.search(r"\[SAR (\d+):(\d+) DAR", video)
    sar = Fraction(int(sar.group(1)), int(sar.group(2))) if sar and int(sar.group(1)) and int(sar.group(2)) else None
    return VideoInfo(frame.shape[1], frame.shape[0], fps, frames if frames > 0 else None,
                     audio.group(1) if audio else None, sar if sar != 1 else None)


def _video_stream(ffmpeg_info: str) -> str:
    """The part of `ffmpeg -i`'s description about the first video stream: its line and its metadata."""
    lines = ffmpeg_info.splitlines()
    start = next((i for i, line in enumerate(lines) if re.match(r"\s*Stream #\S+.*?: Video: ", line)), None)
    if start is None:
        return ""
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"\s*Stream #|\S", lines[i])), len(lines))
    return "\n".join(lines[start:end])


def _frame_rate(candidates: list[float]) -> Fraction:
    """The first plausible rate as an exact fraction: 29.97002997 is 30000/1001, not 2997/100."""
    for value in candidates:
        if math.isfinite(value) and 0 < value <= 1000:
            rate = Fraction(value).limit_denominator(1001)
            return rate if abs(rate - value) < 1e-6 * value else Fraction(value).limit_denominator(1_000_000)
    warn("the video does not say its frame rate: assuming 30 fps")
    return Fraction(30)


def audio_codec(ffmpeg: str, source: Path, suffix: str) -> str:
    """`copy` if ffmpeg can copy the source's audio into a `suffix` file as it is, else `aac`."""
    with tempfile.TemporaryDirectory() as folder:
        trial = subprocess.run([ffmpeg, "-v", "error", "-i", str(source), "-map", "0:a", "-c:a", "copy", "-t", "0.5",
                                "-y", str(Path(folder) / f"trial{suffix}")], capture_output=True,
                               stdin=subprocess.DEVNULL)
    return "copy" if trial.returncode == 0 else "aac"


class FrameReader:
    """Decode a video with OpenCV in a background thread: RGB uint8 HxWx3 frames, resized to `size`
    (width, height). A bounded queue keeps only a few frames in memory.

    With `fps`, the frames come at that constant rate, placed by their timestamps: a variable-frame-rate
    video (phones drop their rate in the dark) has each frame repeated until the next one is due, and a frame
    whose slot is already taken (a faster stretch) left out, as ffmpeg's `-fps_mode cfr` does. Frame k is
    then the picture shown at k/fps (within half a frame), so the picture stays in sync with the sound. A
    constant-rate video comes through unchanged."""

    def __init__(self, path: Path, size: tuple[int, int], queue_size: int = 16, fps: Fraction | None = None):
        self._capture = cv2.VideoCapture(str(path))
        self._size = size
        self._fps = fps
        self.decoded = 0  # frames decoded so far (each once, however often it goes out)
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            slots, previous = ConstantRate(self._fps), None
            while not self._stop.is_set():
                ok, frame = self._capture.read()
                if not ok:
                    break
                self.decoded += 1
                repeats, due = slots.place(self._capture.get(cv2.CAP_PROP_POS_MSEC) / 1000)
                for _ in range(repeats):  # the previous frame stays on screen until this one is due
                    self._put(previous)
                if not due:
                    continue
                frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                if (frame.shape[1], frame.shape[0]) != self._size:
                    shrink = self._size[0] * self._size[1] < frame.shape[0] * frame.shape[1]
                    frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
                self._put(frame)
                previous = frame
        except Exception as exc:
            self._error = exc
        finally:
            self._capture.release()
            self._put(None)

    def _put(self, item: np.ndarray | None) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                pass

    def __iter__(self) -> Iterator[np.ndarray]:
        while (frame := self._queue.get()) is not None:
            yield frame
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class ConstantRate:
    """Where each decoded frame goes at a constant `fps`, from its timestamp in seconds: output frame k shows
    the last frame due by k/fps (timestamps rounded to the nearest slot). Without a rate, or where the
    timestamps are unusable (missing, or not increasing), every frame goes out once, in order."""

    def __init__(self, fps: Fraction | None):
        self._fps = fps
        self._first: float | None = None
        self._last = -math.inf
        self._next_slot = 0

    def place(self, timestamp: float) -> tuple[int, bool]:
        """How many more times the previous frame goes out before this one, and whether this one goes out
        (not where an earlier frame already took its slot)."""
        if self._fps is None or not math.isfinite(timestamp) or timestamp <= self._last:
            self._next_slot += 1
            return 0, True
        self._last = timestamp
        if self._first is None:
            self._first = timestamp
        slot = round((timestamp - self._first) * self._fps)
        if slot < self._next_slot:
            return 0, False
        repeats, self._next_slot = slot - self._next_slot, slot + 1
        return repeats, True


class VideoWriter:
    """Encode RGB uint8 NxHxWx3 batches in a background thread: H.264 (yuv420p) by piping raw frames
    to ffmpeg, with the audio of `audio_from` muxed in; without ffmpeg, OpenCV's mp4v writer, no audio.

    yuv420p needs even sides: an odd height or width gets its last row or column repeated once. `sar`: the
    sample aspect ratio to mark the output with (anamorphic video is carried over as it is, not resampled to square
    pixels); OpenCV's writer cannot mark it.
    """

    def __init__(self, path: Path, size: tuple[int, int], fps: Fraction, ffmpeg: str | None, crf: int = 18,
                 preset: str = "medium", audio_from: Path | None = None, audio_codec: str = "copy",
                 queue_size: int = 4, sar: Fraction | None = None):
        width, height = size
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._error: Exception | None = None
        self._aborted = False
        self._process: subprocess.Popen | None = None
        self._opencv: cv2.VideoWriter | None = None
        self.padding = (height % 2, width % 2) if ffmpeg else (0, 0)
        if ffmpeg:
            self._log = tempfile.TemporaryFile()
            command = [ffmpeg, "-hide_banner", "-nostats", "-loglevel", "error",
                       "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width + width % 2}x{height + height % 2}",
                       "-framerate", f"{fps.numerator}/{fps.denominator}", "-i", "pipe:0"]
            if audio_from is not None:
                command += ["-i", str(audio_from), "-map", "0:v", "-map", "1:a?", "-c:a", audio_codec]
                command += ["-b:a", "192k"] if audio_codec != "copy" else []
            command += ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
                        "-vf", "scale=out_color_matrix=bt709:out_range=tv,"
                               "setparams=colorspace=bt709:color_primaries=bt709:color_trc=bt709:range=tv"
                               + (f",setsar={sar.numerator}/{sar.denominator}" if sar else "")]
            if path.suffix.lower() in (".mp4", ".m4v", ".mov"):
                command += ["-movflags", "+faststart"]
            # Its own session: Ctrl-C reaches only us, and we stop ffmpeg ourselves.
            self._process = subprocess.Popen([*command, "-y", str(path)], stdin=subprocess.PIPE,
                                             stdout=subprocess.DEVNULL, stderr=self._log, start_new_session=True)
        else:
            self._opencv = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), size)
            if not self._opencv.isOpened():
                raise UserError(f"OpenCV cannot write the video {path}")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._aborted:
                try:
                    frames = self._queue.get(timeout=0.1)
                except queue.Empty:
                    continue
                if frames is None:
                    break
                if self._process is not None:
                    if any(self.padding):
                        frames = np.pad(frames, ((0, 0), (0, self.padding[0]), (0, self.padding[1]), (0, 0)),
                                        mode="edge")
                    self._process.stdin.write(np.ascontiguousarray(frames).tobytes())
                else:
                    for frame in frames:
                        self._opencv.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        except Exception as exc:  # e.g. BrokenPipeError: ffmpeg stopped, its log says why
            self._error = exc

    def write(self, frames: np.ndarray) -> None:
        """Queue a batch; waits while the encoder is behind."""
        while self._error is None:
            try:
                self._queue.put(frames, timeout=0.1)
                return
            except queue.Full:
                pass
        self._finish()

    def close(self) -> None:
        """Encode what is queued and finish the file; UserError if the encoder failed."""
        self.write(None)
        self._finish()

    def _finish(self) -> None:
        self._thread.join()
        if self._opencv is not None:
            self._opencv.release()
            if self._error is not None:
                raise UserError(f"OpenCV's video writer failed: {self._error}")
            return
        with contextlib.suppress(BrokenPipeError):
            self._process.stdin.close()
        returncode = self._process.wait()
        if returncode or self._error is not None:
            self._log.seek(0)
            lines = self._log.read().decode(errors="replace").strip().splitlines()
            first = re.sub(r"^(\[[^]]*\] *)+", "", lines[0]) if lines else self._error  # the cause; the rest follow
            raise UserError(f"ffmpeg failed (exit status {returncode}): {first}")

    def abort(self) -> None:
        """Stop at once (after Ctrl-C or an error); the file is left incomplete for the caller to delete."""
        self._aborted = True
        if self._process is not None:
            self._process.kill()
            self._process.wait()
        self._thread.join()
        if self._process is not None:
            with contextlib.suppress(OSError):
                self._process.stdin.close()
        if self._opencv is not None:
            self._opencv.release()

