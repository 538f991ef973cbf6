"""Pure conversions between client payloads and the model's tensors.

The model takes and returns NCHW float32 in [0, 1] (RGB); clients send PNG/JPEG (or a raw
float32 tensor) and get PNG/JPEG (or the raw output tensor, for exact comparisons).
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import RequestError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
IMAGE_TYPES = ("image/png", "image/jpeg")
RAW_TENSOR_TYPE = "application/octet-stream"
TENSOR_SHAPE_HEADER = "X-Tensor-Shape"
# PNG level 1: a few ms at 512² instead of tens at the default level, a few % larger.
PNG_COMPRESSION = 1
JPEG_QUALITY = 95


@dataclass(frozen=True)
class ImageLimits:
    max_side: int = 4096
    max_pixels: int = 4096 * 4096


def sniff_image_type(data: bytes) -> str | None:
    if data.startswith(PNG_MAGIC):
        return "image/png"
    if data.startswith(JPEG_MAGIC):
        return "image/jpeg"
    return None


def decode_base64(text: object, field: str = "image") -> bytes:
    if not isinstance(text, str) or not text:
        raise RequestError(400, f"'{field}' must be a non-empty base64 string.")
    if text.startswith("data:"):
        # data:image/png;base64,<payload>
        _, _, text = text.partition(",")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(400, f"'{field}' is not valid base64: {exc}.") from None


def _check_dimensions(width: int, height: int, channels: int, limits: ImageLimits) -> None:
    if width <= 0 or height <= 0:
        raise RequestError(422, f"Image has zero size ({width}x{height}).")
    if width > limits.max_side or height > limits.max_side:
        raise RequestError(
            422, f"Image is {width}x{height}; the largest side allowed is {limits.max_side} pixels."
        )
    if width * height > limits.max_pixels:
        raise RequestError(
            422, f"Image has {width * height} pixels; at most {limits.max_pixels} are allowed."
        )
    if channels != 3:
        raise RequestError(422, f"Image has {channels} channel(s); the model takes 3-channel RGB images.")


_MODE_CHANNELS = {
    "1": 1,
    "L": 1,
    "I": 1,
    "F": 1,
    "I;16": 1,
    "LA": 2,
    "RGB": 3,
    "YCbCr": 3,
    "RGBA": 4,
    "CMYK": 4,
}


def decode_image(data: bytes, limits: ImageLimits) -> np.ndarray:
    """PNG/JPEG bytes → HWC uint8 RGB, refusing oversized images before decoding pixels."""
    if sniff_image_type(data) is None:
        raise RequestError(400, "Image is neither PNG nor JPEG.")
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            mode = img.mode
            if mode == "P":
                # A palette image is RGB (or RGBA when it carries transparency).
                mode = "RGBA" if "transparency" in img.info else "RGB"
            _check_dimensions(width, height, _MODE_CHANNELS.get(mode, 0), limits)
            rgb = img.convert("RGB") if img.mode != "RGB" else img
            rgb.load()
            pixels = np.asarray(rgb, dtype=np.uint8)
    except RequestError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise RequestError(400, f"Image could not be decoded: {exc}.") from None
    return pixels


def parse_tensor_shape(header: str | None) -> tuple[int, ...]:
    if not header:
        raise RequestError(
            400, f"A raw tensor body needs the {TENSOR_SHAPE_HEADER} header (e.g. 1,3,256,256)."
        )
    try:
        shape = tuple(int(part) for part in header.replace("x", ",").split(","))
    except ValueError:
        raise RequestError(
            400, f"{TENSOR_SHAPE_HEADER} must be comma-separated integers, got {header!r}."
        ) from None
    return shape


def decode_raw_tensor(data: bytes, shape: tuple[int, ...], limits: ImageLimits) -> np.ndarray:
    """Little-endian float32 NCHW bytes → a (1, 3, H, W) batch."""
    if len(shape) != 4 or shape[0] != 1:
        raise RequestError(422, f"Tensor shape must be 1,C,H,W; got {','.join(map(str, shape))}.")
    _, channels, height, width = shape
    _check_dimensions(width, height, channels, limits)
    expected = 4 * channels * height * width
    if len(data) != expected:
        raise RequestError(400, f"Tensor body has {len(data)} bytes; shape {shape} float32 needs {expected}.")
    return np.frombuffer(data, dtype="<f4").reshape(shape)


def image_to_batch(pixels: np.ndarray) -> np.ndarray:
    """HWC uint8 → (1, 3, H, W) float32 in [0, 1]."""
    chw = np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32)
    chw *= 1.0 / 255.0
    return chw[np.newaxis]


def batch_to_image(batch: np.ndarray) -> np.ndarray:
    """(1, C, H, W) float in [0, 1] → HWC uint8, C in {1, 3}."""
    if batch.ndim != 4 or batch.shape[0] != 1 or batch.shape[1] not in (1, 3):
        raise RequestError(500, f"The model returned shape {list(batch.shape)}, which is not an image.")
    hwc = np.clip(batch[0].transpose(1, 2, 0), 0.0, 1.0) * 255.0
    pixels = np.rint(hwc).astype(np.uint8)
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


def encode_image(pixels: np.ndarray, content_type: str = "image/png") -> bytes:
    bgr = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    if content_type == "image/jpeg":
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    else:
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:
        raise RequestError(500, "The model output could not be encoded as an image.")
    return bytes(buf)


def image_bytes_to_batch(data: bytes, limits: ImageLimits) -> np.ndarray:
    return image_to_batch(decode_image(data, limits))


def batch_to_image_bytes(batch: np.ndarray, content_type: str = "image/png") -> tuple[bytes, int, int]:
    """The encoded image with its width and height."""
    pixels = batch_to_image(batch)
    return encode_image(pixels, content_type), int(pixels.shape[1]), int(pixels.shape[0])
