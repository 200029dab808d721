"""Animated GIFs of an agent's episodes: a caption on every frame, one palette, written atomically as frames arrive.

Frames come from `envs.render.render_episodes` (any objects with its fields: `image (H, W, 3) uint8, episode,
step, running_return, done`). Each is optionally downscaled, mapped to one shared palette (made from the first frame,
plus two reserved entries for the caption), captioned `episode i  step t  return R` in a solid box at its top left,
and written at once as the change from the frame before (the GIF format's delta frames), so memory stays two frames
(and the palette's 32 MB color lookup table) whatever the episode's length. Each frame carries a GIF comment, a
JSON object of its caption's figures (`{"episode", "step", "return", "done"}`, the return exact), so a reader can
check what every frame shows.
The last frame of each episode is held `HOLD_MS` so its full return can be read.

Pillow is imported only when a GIF is wanted (`pip install -e '.[render]'`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from agents.run.checkpoint import atomic_open
from agents.validate import real

NEEDS_PILLOW = "writing a GIF needs Pillow, which is not installed: pip install -e '.[render]'"
BOX_COLOR = (0, 0, 0)
"""The caption's solid box (black)."""
TEXT_COLOR = (255, 255, 255)
"""The caption's text (white, not anti-aliased, so the caption is exactly these two colors)."""
FONT_SIZE = 16
"""Pixel size of Pillow's default font (Pillow < 10.1 has only its fixed bitmap font)."""
PAD = 4
"""Pixels between the box's edge and the text, and between the box and the frame's corner."""
HOLD_MS = 1000
"""Milliseconds the last frame of each episode stays on screen."""
MAX_FPS = 50
"""GIF delays count hundredths of a second and browsers slow down delays under 20 ms: 50 frames/s at most."""
MIN_FPS = 0.1
"""10 s a frame at most (a GIF delay has 16 bits of hundredths of a second)."""
BOX_INDEX, TEXT_INDEX, CLEAR_INDEX = 252, 253, 254
"""Palette entries reserved for the caption's two colors and for the transparent pixels of delta frames (those that
did not change); a frame's own colors take at most entries 0..251."""
TEMP_NAME_EXTRA = len("..") + len("XXXXXXXX") + len(".tmp")
"""Characters `atomic_open`'s temporary file adds to the GIF's name (`.NAME.XXXXXXXX.tmp`)."""


class FrameLike(Protocol):
    """What `write_gif` reads of a frame (`envs.render.Frame` has these fields)."""

    image: np.ndarray
    episode: int
    step: int
    running_return: float
    done: bool


def pillow() -> Any:
    """Pillow's `PIL` package with `Image`, `ImageDraw`, `ImageFont` and `GifImagePlugin` loaded.

    Raises:
        ValueError: Pillow is not installed (`NEEDS_PILLOW`, one line).
    """
    try:
        import PIL
        from PIL import GifImagePlugin, Image, ImageDraw, ImageFont  # noqa: F401 - loads the submodules
    except ImportError:
        raise ValueError(NEEDS_PILLOW) from None
    return PIL


def check_gif_path(path: str | Path) -> Path:
    """Refuse, before any work, a GIF path that could not be written; nothing is created.

    Args:
        path: The GIF to (re)place: a name ending in `.gif` in an existing, writable folder (an existing file is
            replaced atomically).

    Returns:
        `path` as a Path.

    Raises:
        ValueError: One line naming the path: the name does not end in `.gif`, is too long for its folder's file
            system, or names a folder; the folder does not exist, is not a folder, or is not writable.
    """
    path = Path(path)
    where = f"--gif {path}"
    if not path.name.lower().endswith(".gif") or path.name.lower() == ".gif":
        raise ValueError(f"{where}: the file name must end in .gif (e.g. agent.gif), got {path.name!r}")
    parent = path.parent
    try:
        name_max = os.pathconf(parent, "PC_NAME_MAX") if parent.is_dir() else 255
    except (OSError, ValueError):  # a parent whose own name is too long, or no such limit to ask about
        name_max = 255
    if len(os.fsencode(path.name)) + TEMP_NAME_EXTRA > name_max:
        raise ValueError(f"{where}: the file name is too long ({len(os.fsencode(path.name))} bytes; at most "
                         f"{name_max - TEMP_NAME_EXTRA} here)")
    try:
        if not parent.exists():
            raise ValueError(f"{where}: its folder {parent} does not exist")
        if not parent.is_dir():
            raise ValueError(f"{where}: {parent} is not a folder")
        if path.is_dir():
            raise ValueError(f"{where}: it is a folder; give a file name ending in .gif, e.g. {path / 'agent.gif'}")
    except OSError as e:  # a folder name too long, a loop of links, ...
        raise ValueError(f"{where}: cannot use this path: {e.strerror or e}") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{where}: cannot write into {parent}: permission denied")
    return path


def format_return(value: float) -> str:
    """A return as a caption shows it: whole numbers without decimals (`37`), others with two (`-81.25`)."""
    value = float(value) + 0.0  # no "-0"
    return f"{value:.0f}" if value.is_integer() else f"{value:.2f}"


def caption(episode: int, step: int, running_return: float) -> str:
    """The text drawn on a frame, e.g. `episode 0  step 37  return 37`."""
    return f"episode {episode}  step {step}  return {format_return(running_return)}"


def font() -> Any:
    """Pillow's default font at `FONT_SIZE` (its fixed bitmap font before Pillow 10.1)."""
    ImageFont = pillow().ImageFont
    try:
        return ImageFont.load_default(size=FONT_SIZE)
    except TypeError:  # Pillow < 10.1: no size
        return ImageFont.load_default()


def draw_caption(image: Any, text: str, box_fill: Any, text_fill: Any) -> tuple[int, int, int, int]:
    """Draw `text` in a solid box at the top left of a Pillow image, in place, without anti-aliasing.

    Pillow lays text out a few pixels differently in "P" and "RGB" images; `write_gif` draws on "P" (indices), so
    a caption re-drawn to check a GIF's pixels must be drawn on "P" too.

    Args:
        image: A Pillow image ("P" for palette indices, "RGB" for colors).
        text: The caption (`caption(...)`).
        box_fill, text_fill: The box's and the text's fill, in the image's mode (an index, or an RGB tuple).

    Returns:
        The box `(left, top, right, bottom)`, right and bottom exclusive, clipped to the image.
    """
    draw = pillow().ImageDraw.Draw(image)
    draw.fontmode = "1"  # two colors exactly: what a reader (or a test) can compare pixel for pixel
    f = font()
    left, top, right, bottom = draw.textbbox((0, 0), text, font=f)
    box = (PAD, PAD, min(image.width, 3 * PAD + right - left), min(image.height, 3 * PAD + bottom - top))
    draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=box_fill)
    draw.text((2 * PAD - left, 2 * PAD - top), text, font=f, fill=text_fill)
    return box


def default_fps(render_fps: float, every: int) -> float:
    """Real time: the environment's frames per second over the frames kept, within [`MIN_FPS`, `MAX_FPS`]."""
    return min(max(float(render_fps) / every, MIN_FPS), MAX_FPS)


def frame_ms(fps: float) -> int:
    """A frame's delay for `fps` in [`MIN_FPS`, `MAX_FPS`], in the 10 ms units a GIF stores (20 ms to 10 s)."""
    return max(20, int(round(100.0 / fps)) * 10)


def write_gif(path: str | Path, frames: Iterable[FrameLike], fps: float, scale: float = 1.0) -> dict[str, Any]:
    """Write `frames` as a looping GIF at `path`, atomically: a temporary file in its folder, then `os.replace`.

    Every frame gets its caption and its comment (see the module docstring); a frame is shown `frame_ms(fps)`, the
    last of each episode `HOLD_MS` (or longer, at very low fps). A failure at any point (the frames' source
    raising, a full disk) leaves no GIF and no temporary file behind, and an existing file at `path` untouched.

    Args:
        path: Checked with `check_gif_path` first.
        frames: `FrameLike` objects of one size, in order; the first one's colors make the palette.
        fps: Frames per second in [`MIN_FPS`, `MAX_FPS`]; see `default_fps`.
        scale: Size factor in (0, 1]: frames are downscaled to `round(W * scale) x round(H * scale)` first.

    Returns:
        `{"path", "bytes", "frames", "width", "height", "frame_ms", "episodes"}`, where `episodes` lists each
        episode's `{"episode", "length", "return", "frames"}` (length: actions taken; return: its full return).

    Raises:
        ValueError: A bad path, fps or scale, no frames, frames of two sizes, or Pillow missing.
        OSError: The file could not be written (naming `path`).
    """
    path = check_gif_path(path)
    fps, scale = real("fps", fps), real("scale", scale)
    if not MIN_FPS <= fps <= MAX_FPS or not 0 < scale <= 1:
        raise ValueError(f"fps must be in [{MIN_FPS}, {MAX_FPS}] and scale in (0, 1], got fps={fps} and "
                         f"scale={scale}")
    PIL = pillow()
    delay = frame_ms(fps)
    hold = max(HOLD_MS, delay)
    episodes: list[dict[str, Any]] = []
    with atomic_open(path, "wb") as f:
        palette: Palette | None = None
        previous = None  # (H, W) uint8 indices of the frame before
        for n, frame in enumerate(frames):
            rgb = _scaled(frame.image, scale)  # (H, W, 3)
            if palette is None:
                palette = Palette(rgb)
            elif rgb.shape != previous.shape + (3,):
                raise ValueError(f"frame {n} is {rgb.shape[1]}x{rgb.shape[0]} after frames of "
                                 f"{previous.shape[1]}x{previous.shape[0]}; every frame of a GIF has one size")
            image = palette.image(palette.indices(rgb))
            draw_caption(image, caption(frame.episode, frame.step, frame.running_return), BOX_INDEX, TEXT_INDEX)
            indices = np.asarray(image)  # (H, W): the frame as shown
            if previous is None:
                header, _ = PIL.GifImagePlugin.getheader(image, None, {"loop": 0})
                f.write(b"".join(header))
            comment = {"episode": int(frame.episode), "step": int(frame.step), "return": float(frame.running_return),
                       "done": bool(frame.done)}
            _write_frame(f, palette, indices, previous, comment, hold if frame.done else delay)
            previous = indices
            if not episodes or episodes[-1]["episode"] != frame.episode:
                episodes.append({"episode": int(frame.episode), "length": 0, "return": 0.0, "frames": 0})
            episodes[-1].update({"length": int(frame.step), "return": float(frame.running_return),
                                 "frames": episodes[-1]["frames"] + 1})
        if previous is None:
            raise ValueError("no frames to write: a GIF needs at least one")
        f.write(b";")  # the GIF trailer
        n_bytes = f.tell()
    return {"path": str(path), "bytes": n_bytes, "frames": sum(e["frames"] for e in episodes),
            "width": previous.shape[1], "height": previous.shape[0], "frame_ms": delay, "episodes": episodes}


class Palette:
    """One palette for every frame of a GIF, made from the first frame's colors, and the exact nearest-color map.

    The first frame's colors are kept exactly when it has at most `BOX_INDEX` of them (classic control's first frames
    have a few dozen), else `BOX_INDEX` colors of a median cut; entries `BOX_INDEX` and `TEXT_INDEX` are the
    caption's. Each later color maps to its nearest entry (squared RGB distance), computed once per color and kept
    in a lookup table over all 2^24 colors, so a frame costs two array lookups.

    Args:
        first: (H, W, 3) uint8 RGB, the first frame.
    """

    def __init__(self, first: np.ndarray) -> None:
        exact = np.unique(first.reshape(-1, 3), axis=0)  # (n, 3)
        if len(exact) > BOX_INDEX:
            Image = pillow().Image
            cut = Image.fromarray(first).quantize(BOX_INDEX, method=Image.MEDIANCUT, dither=Image.NONE)
            exact = np.array(cut.getpalette()[: 3 * BOX_INDEX], np.uint8).reshape(-1, 3)
        self.colors = exact.astype(np.int64)  # (n, 3), n <= BOX_INDEX: what frame pixels map to
        pad = [self.colors[-1]] * (BOX_INDEX - len(self.colors))  # unused entries repeat a color
        self.rgb = np.vstack([self.colors, *pad, BOX_COLOR, TEXT_COLOR, [0, 0, 0]]).astype(np.uint8)  # (255, 3)
        self._lut = np.full(1 << 24, 0xFFFF, np.uint16)  # 24-bit color -> index; 0xFFFF not computed yet

    def indices(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W) uint8 palette indices of `rgb: (H, W, 3)` uint8, each pixel's nearest palette color."""
        codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]  # (H, W)
        found = self._lut[codes]
        unknown = found == 0xFFFF
        if unknown.any():
            new = np.unique(codes[unknown])  # (k,)
            new_rgb = np.stack([new >> 16, (new >> 8) & 255, new & 255], axis=1)  # (k, 3)
            distance = ((new_rgb[:, None, :] - self.colors[None, :, :]) ** 2).sum(axis=2)  # (k, n)
            self._lut[new] = distance.argmin(axis=1)
            found = self._lut[codes]
        return found.astype(np.uint8)

    def image(self, indices: np.ndarray) -> Any:
        """A Pillow "P" image of `indices: (h, w)` uint8 with this palette."""
        image = pillow().Image.frombytes("P", (indices.shape[1], indices.shape[0]),
                                         np.ascontiguousarray(indices, np.uint8).tobytes())
        image.putpalette(self.rgb.reshape(-1).tolist())
        return image


def _scaled(image: np.ndarray, scale: float) -> np.ndarray:
    """An `(H, W, 3)` uint8 frame, downscaled by `scale` (bilinear) when below 1."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"a frame must be an (H, W, 3) uint8 RGB array, got shape {image.shape} and dtype "
                         f"{image.dtype}")
    if scale == 1:
        return image
    Image = pillow().Image
    rgb = Image.fromarray(np.ascontiguousarray(image))
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    return np.asarray(rgb.resize(size, Image.BILINEAR))


def _write_frame(f: Any, palette: Palette, indices: np.ndarray, previous: np.ndarray | None, comment: dict[str, Any],
                 ms: int) -> None:
    """One frame: its comment, then the rectangle that changed since `previous` (the whole first frame).

    In that rectangle, pixels that did not change are transparent (`CLEAR_INDEX`), so the unchanged scene between
    the caption and the moving parts costs little LZW code.
    """
    data = json.dumps(comment, separators=(",", ":")).encode()
    blocks = b"".join(bytes([len(data[i:i + 255])]) + data[i:i + 255] for i in range(0, len(data), 255))
    f.write(b"!\xfe" + blocks + b"\x00")  # a comment extension: sub-blocks of at most 255 bytes, then a zero
    left = top = 0
    if previous is not None:
        changed = indices != previous  # (H, W)
        rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
        left, top, right, bottom = (0, 0, 1, 1) if rows.size == 0 else (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
        indices = np.where(changed[top:bottom, left:right], indices[top:bottom, left:right], CLEAR_INDEX)
    chunks = pillow().GifImagePlugin.getdata(palette.image(indices), (int(left), int(top)), duration=ms,
                                             transparency=CLEAR_INDEX)
    f.write(b"".join(chunks))
