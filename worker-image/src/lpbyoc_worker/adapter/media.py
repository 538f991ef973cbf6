"""Client media to runtime arrays and back (pure functions; no HTTP here).

ai-runner opens uploads with Pillow and converts them to RGB, so any format and mode Pillow reads
is accepted: RGBA (alpha dropped, as `convert("RGB")` does), L, 1, P (palette), 16-bit and float
greyscale (scaled to 8 bits, not clipped), CMYK, animated GIF/WebP (the first frame). Audio goes
through PyAV, so any container/codec FFmpeg decodes becomes float32 mono at the runtime's rate.
Outputs are PNG data URLs, the only form ai-runner returns and go-livepeer stores.
"""

from __future__ import annotations

import base64
import io
import warnings

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import RequestError
from .imaging import PNG_COMPRESSION, ImageLimits

AUDIO_FORMAT_ERROR = "Unsupported audio format or malformed file."  # ai-runner's wording
SPEECH_SAMPLING_RATE = 16_000


def _check_size(width: int, height: int, limits: ImageLimits) -> None:
    if width <= 0 or height <= 0:
        raise RequestError(400, f"Image has zero size ({width}x{height}).")
    if width > limits.max_side or height > limits.max_side:
        raise RequestError(
            400, f"Image is {width}x{height}; the largest side allowed is {limits.max_side} pixels."
        )
    if width * height > limits.max_pixels:
        raise RequestError(
            400, f"Image has {width * height} pixels; at most {limits.max_pixels} are allowed."
        )


def _to_rgb(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit/float greyscale: scale into 8 bits (Pillow's convert would clip at 255).
        grey = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or grey.max(initial=0) > 255 else 255.0
        if mode == "F" and grey.max(initial=0) <= 1.0:
            top = 1.0
        grey8 = np.clip(np.rint(grey * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(grey8[:, :, np.newaxis], 3, axis=2)
    if mode != "RGB":
        img = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def decode_image(data: bytes, limits: ImageLimits) -> np.ndarray:
    """Any image Pillow reads → HxWx3 uint8 RGB; 400 naming the problem otherwise.

    The size is checked from the header, before any pixel is decoded.
    """
    if not data:
        raise RequestError(400, "The image file is empty.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                _check_size(img.size[0], img.size[1], limits)
                img.seek(0)  # animated GIF/WebP/APNG: the first frame
                img.load()
                return _to_rgb(img)
    except RequestError:
        raise
    except UnidentifiedImageError:
        raise RequestError(400, "Image could not be decoded: not a format Pillow reads.") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise RequestError(400, f"Image could not be decoded: {exc}.") from None
    except Image.DecompressionBombWarning as exc:
        raise RequestError(400, f"Image could not be decoded: {exc}.") from None


def encode_png(pixels: np.ndarray) -> bytes:
    """HxWx3 (or HxW) uint8 → PNG bytes (level 1: fast, a few % larger than the default)."""
    array = np.ascontiguousarray(pixels)
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", array, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:
        raise RequestError(500, "The model output could not be encoded as PNG.")
    return bytes(buf)


def png_data_url(pixels: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(encode_png(pixels)).decode("ascii")


def as_rgb_images(tensor: np.ndarray, what: str) -> np.ndarray:
    """A runtime's NxHxWx3 uint8 output, or 500 saying it is not one (a runtime bug, not the client's)."""
    if tensor.ndim != 4 or tensor.shape[-1] != 3 or tensor.dtype != np.uint8:
        raise RequestError(
            500, f"The model returned {what} of shape {list(tensor.shape)} {tensor.dtype}, not NxHxWx3 uint8."
        )
    return tensor


def decode_audio(data: bytes, rate: int = SPEECH_SAMPLING_RATE, max_seconds: float = 3600.0) -> np.ndarray:
    """Any container/codec FFmpeg reads → float32 mono samples at `rate`; 400 when undecodable."""
    import av

    if not data:
        raise RequestError(400, AUDIO_FORMAT_ERROR)
    chunks: list[np.ndarray] = []
    total = 0
    limit = int(max_seconds * rate)
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise RequestError(400, AUDIO_FORMAT_ERROR)
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    samples = out.to_ndarray().reshape(-1)
                    chunks.append(samples)
                    total += samples.size
                if total > limit:
                    raise RequestError(400, f"The audio is longer than the {max_seconds:.0f} s allowed.")
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except RequestError:
        raise
    except (av.error.FFmpegError, ValueError, OSError, IndexError, EOFError):
        raise RequestError(400, AUDIO_FORMAT_ERROR) from None
    audio = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    if audio.size == 0:
        raise RequestError(400, AUDIO_FORMAT_ERROR)
    return audio
