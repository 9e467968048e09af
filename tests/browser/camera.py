"""Fake camera footage for Chromium: pictures written as a Y4M (YUV4MPEG2, 4:2:0) video file.

Chromium plays the file as the camera with --use-file-for-fake-video-capture, looping it. No ffmpeg
is needed: Y4M is a text header, then per frame `FRAME\\n` and the raw Y, U and V planes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

WIDTH = 640
HEIGHT = 480
# What a phone held up to a ticket sees around the code: a light, not quite white, background.
BACKGROUND = 235


def framed(png: bytes | Image.Image, width: int = WIDTH, height: int = HEIGHT, fill: float = 0.8) -> Image.Image:
    """A QR image centred on a light background, scaled (keeping its modules sharp) to `fill` of the height."""
    picture = png if isinstance(png, Image.Image) else Image.open(io.BytesIO(png))
    picture = picture.convert("L")
    side = round(min(width, height) * fill)
    picture = picture.resize((side, side), Image.Resampling.NEAREST)
    frame = Image.new("L", (width, height), BACKGROUND)
    frame.paste(picture, ((width - side) // 2, (height - side) // 2))
    return frame


def write_y4m(path: Path, scenes: Sequence[tuple[Image.Image, int]], fps: int = 10) -> Path:
    """Writes each (picture, frames) scene in turn; pictures must share one even width and height."""
    width, height = scenes[0][0].size
    if width % 2 or height % 2:
        raise ValueError("4:2:0 needs an even width and height")
    # Grey pictures: the luma plane is the picture itself, the chroma planes are neutral.
    neutral = bytes([128]) * ((width // 2) * (height // 2) * 2)
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode("ascii"))
        for picture, frames in scenes:
            if picture.size != (width, height):
                raise ValueError("every scene must have the same size")
            luma = picture.convert("L").tobytes()
            for _ in range(frames):
                out.write(b"FRAME\n")
                out.write(luma)
                out.write(neutral)
    return path
