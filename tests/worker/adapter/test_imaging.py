"""Pure conversions between client payloads and tensors (no server involved)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from lpbyoc_worker.adapter import imaging
from lpbyoc_worker.adapter.errors import RequestError
from PIL import Image

LIMITS = imaging.ImageLimits(max_side=256, max_pixels=256 * 200)


def png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def random_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_png_round_trip_is_lossless_through_tensor_layout() -> None:
    pixels = random_rgb(17, 23)
    decoded = imaging.decode_image(png_bytes(pixels), LIMITS)
    assert decoded.shape == (17, 23, 3)
    batch = imaging.image_to_batch(decoded)
    assert batch.shape == (1, 3, 17, 23) and batch.dtype == np.float32
    np.testing.assert_allclose(batch[0, 1], pixels[:, :, 1] / 255.0, rtol=0, atol=1e-7)
    back = imaging.decode_image(imaging.encode_image(imaging.batch_to_image(batch)), LIMITS)
    np.testing.assert_array_equal(back, pixels)


def test_jpeg_decodes_to_rgb() -> None:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), (200, 10, 10), np.uint8)).save(buf, format="JPEG", quality=95)
    pixels = imaging.decode_image(buf.getvalue(), LIMITS)
    assert pixels.shape == (8, 8, 3)
    assert pixels[..., 0].mean() > 180 and pixels[..., 1].mean() < 40


@pytest.mark.parametrize(
    ("data", "status", "fragment"),
    [
        (b"GIF89a....", 400, "neither PNG nor JPEG"),
        (imaging.PNG_MAGIC + b"\x00" * 40, 400, "could not be decoded"),
    ],
)
def test_undecodable_bytes_are_400(data: bytes, status: int, fragment: str) -> None:
    with pytest.raises(RequestError) as err:
        imaging.decode_image(data, LIMITS)
    assert err.value.status == status and fragment in err.value.msg


def test_truncated_png_is_400() -> None:
    data = png_bytes(random_rgb(64, 64))
    with pytest.raises(RequestError) as err:
        imaging.decode_image(data[: len(data) // 2], LIMITS)
    assert err.value.status == 400


@pytest.mark.parametrize(
    ("array", "mode", "fragment"),
    [
        (np.zeros((300, 10, 3), np.uint8), None, "largest side allowed is 256"),
        (np.zeros((250, 250, 3), np.uint8), None, "at most 51200 are allowed"),
        (np.zeros((8, 8), np.uint8), "L", "1 channel(s)"),
        (np.zeros((8, 8, 4), np.uint8), "RGBA", "4 channel(s)"),
    ],
)
def test_bad_dimensions_are_422(array: np.ndarray, mode: str | None, fragment: str) -> None:
    with pytest.raises(RequestError) as err:
        imaging.decode_image(png_bytes(array, mode), LIMITS)
    assert err.value.status == 422
    assert fragment in err.value.msg


def test_base64_accepts_data_url_and_rejects_garbage() -> None:
    raw = b"\x89PNG-ish bytes"
    encoded = base64.b64encode(raw).decode()
    assert imaging.decode_base64(encoded) == raw
    assert imaging.decode_base64("data:image/png;base64," + encoded) == raw
    with pytest.raises(RequestError) as err:
        imaging.decode_base64("not*base64!")
    assert err.value.status == 400 and "not valid base64" in err.value.msg
    with pytest.raises(RequestError):
        imaging.decode_base64(42)


def test_raw_tensor_checks_shape_and_size() -> None:
    tensor = np.random.default_rng(1).random((1, 3, 4, 5), dtype=np.float32)
    shape = imaging.parse_tensor_shape("1,3,4,5")
    np.testing.assert_array_equal(imaging.decode_raw_tensor(tensor.tobytes(), shape, LIMITS), tensor)
    with pytest.raises(RequestError) as err:
        imaging.decode_raw_tensor(tensor.tobytes()[:-4], shape, LIMITS)
    assert err.value.status == 400 and "needs 240" in err.value.msg
    with pytest.raises(RequestError) as err:
        imaging.decode_raw_tensor(b"", (1, 3, 0, 5), LIMITS)
    assert err.value.status == 422 and "zero size" in err.value.msg
    with pytest.raises(RequestError) as err:
        imaging.parse_tensor_shape(None)
    assert err.value.status == 400
    with pytest.raises(RequestError):
        imaging.parse_tensor_shape("1,three,4,5")


def test_non_image_model_output_is_reported() -> None:
    with pytest.raises(RequestError) as err:
        imaging.batch_to_image(np.zeros((1, 7, 4, 4), np.float32))
    assert err.value.status == 500 and "[1, 7, 4, 4]" in err.value.msg
    gray = imaging.batch_to_image(np.full((1, 1, 2, 2), 2.0, np.float32))
    assert gray.shape == (2, 2, 3) and int(gray.max()) == 255
