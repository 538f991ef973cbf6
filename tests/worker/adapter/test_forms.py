"""Pure parts of the ai-runner routes: field parsing (FastAPI's 422s), params, media, queue, health."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
from lpbyoc_worker.adapter import forms, media, pipelines
from lpbyoc_worker.adapter.errors import RequestError
from lpbyoc_worker.adapter.gate import CapacityGate, QueueFull, QueueTimeout
from lpbyoc_worker.adapter.imaging import ImageLimits
from lpbyoc_worker.adapter.metrics import AdapterMetrics
from lpbyoc_worker.adapter.readiness import IncompatibleModel, Readiness
from lpbyoc_worker.adapter.taskcheck import check_task, configured_task
from lpbyoc_worker.runtimes.base import TaskResult
from PIL import Image

FIELDS = pipelines.PIPELINES["image-to-image"].fields(pipelines.Limits(max_images_per_prompt=4))


class _File:
    filename = "x.png"
    file = io.BytesIO(b"")


def test_form_values_parse_like_fastapi() -> None:
    values = forms.parse_fields(
        {
            "prompt": "p",
            "image": _File(),
            "strength": "0.800000",
            "safety_check": "false",
            "seed": "7",
            "negative_prompt": "",
        },
        FIELDS,
        "form",
    )
    assert values["strength"] == 0.8 and values["safety_check"] is False and values["seed"] == 7
    assert values["negative_prompt"] == "" and values["guidance_scale"] == 7.5  # "" means "not sent"
    assert values["num_inference_steps"] == 100 and values["num_images_per_prompt"] == 1


def test_every_bad_field_is_listed_with_fastapi_types() -> None:
    with pytest.raises(forms.ValidationFailed) as err:
        forms.parse_fields(
            {
                "prompt": "",
                "image": "text",
                "seed": "x",
                "strength": "nan",
                "num_images_per_prompt": "9",
                "safety_check": "maybe",
            },
            FIELDS,
            "form",
        )
    got = {tuple(e["loc"]): e["type"] for e in err.value.errors}
    assert got == {
        ("body", "prompt"): "missing",
        ("body", "image"): "value_error",
        ("body", "strength"): "finite_number",
        ("body", "safety_check"): "bool_parsing",
        ("body", "seed"): "int_parsing",
        ("body", "num_images_per_prompt"): "less_than_equal",
    }
    assert all({"type", "loc", "msg", "input"} <= set(e) for e in err.value.errors)


def test_json_values_follow_pydantic_lax_mode() -> None:
    fields = pipelines.PIPELINES["text-to-image"].fields(pipelines.Limits())
    values = forms.parse_fields(
        {"prompt": "p", "seed": 3.0, "safety_check": 0, "height": "64"}, fields, "json"
    )
    assert (values["seed"], values["safety_check"], values["height"]) == (3, False, 64)
    with pytest.raises(forms.ValidationFailed) as err:
        forms.parse_fields({"prompt": 5, "seed": 1.5, "guidance_scale": True}, fields, "json")
    assert [e["type"] for e in err.value.errors] == ["string_type", "float_type", "int_from_float"]
    with pytest.raises(forms.ValidationFailed):
        forms.json_object_or_fail([1])


def test_params_seed_and_loras() -> None:
    assert pipelines.choose_seed(5, 3) == 5
    assert 0 <= pipelines.choose_seed(None, 3) <= 2**32 - 3
    with pytest.raises(RequestError, match="seed"):
        pipelines.choose_seed(2**32 - 2, 3)
    assert pipelines.parse_loras('{"a/b": 1}') == {"a/b": 1.0}
    for bad in ("[1]", '{"a": "x"}', "{"):
        with pytest.raises(RequestError) as err:
            pipelines.parse_loras(bad)
        assert err.value.status == 400
    assert pipelines.parse_return_timestamps("Sentence") is True
    assert pipelines.parse_return_timestamps("0") is False
    assert pipelines.parse_return_timestamps("word") == "word"
    assert pipelines.parse_json_array("[[1, 2]]", "point_coords") == [[1, 2]]
    with pytest.raises(RequestError, match="array of"):
        pipelines.parse_json_array('[["a"]]', "box")


def test_responses_count_and_sort() -> None:
    images = np.zeros((2, 4, 4, 3), np.uint8)
    result = TaskResult(data={"seeds": [1, 2], "nsfw": [False, True]}, tensors={"IMAGES": images})
    body = pipelines.respond_images(result, {}, {"seed": 1, "num_images_per_prompt": 2})
    assert [(m["seed"], m["nsfw"]) for m in body["images"]] == [(1, False), (2, True)]
    with pytest.raises(RequestError) as err:
        pipelines.respond_images(result, {}, {"seed": 1, "num_images_per_prompt": 3})
    assert err.value.status == 500
    masks = TaskResult(
        data={"scores": [0.2, 0.9]},
        tensors={
            "MASKS": np.stack([np.zeros((1, 1)), np.ones((1, 1))]).astype(np.float32),
            "LOGITS": np.zeros((2, 1, 1), np.float32),
        },
    )
    body = pipelines.respond_masks(masks, {}, {})
    assert body["scores"] == "[0.9, 0.2]" and body["masks"] == "[[[1.0]], [[0.0]]]"


@pytest.mark.parametrize(
    ("mode", "array"),
    [
        ("RGBA", np.full((4, 5, 4), 200, np.uint8)),
        ("L", np.full((4, 5), 77, np.uint8)),
        ("I;16", np.full((4, 5), 65535, np.uint16)),
        ("P", None),
        ("CMYK", None),
    ],
)
def test_any_pillow_mode_becomes_rgb(mode: str, array: np.ndarray | None) -> None:
    img = Image.fromarray(array) if array is not None else Image.new(mode, (5, 4))
    buf = io.BytesIO()
    img.save(buf, format="TIFF" if mode == "CMYK" else "PNG")
    pixels = media.decode_image(buf.getvalue(), ImageLimits())
    assert pixels.shape == (4, 5, 3) and pixels.dtype == np.uint8
    if mode == "I;16":
        assert int(pixels.max()) == 255  # scaled, not clipped to a constant
    with pytest.raises(RequestError) as err:
        media.decode_image(buf.getvalue(), ImageLimits(max_side=3))
    assert err.value.status == 400


def test_undecodable_audio_is_400_in_ai_runners_words() -> None:
    for data in (b"", b"RIFF....WAVEfmt garbage"):
        with pytest.raises(RequestError) as err:
            media.decode_audio(data)
        assert err.value.status == 400 and err.value.msg == media.AUDIO_FORMAT_ERROR


async def test_queue_waits_in_order_then_refuses_or_times_out() -> None:
    gate = CapacityGate(1)
    release = asyncio.Event()
    order: list[int] = []

    async def job(i: int) -> None:
        async with gate.queued_slot(max_waiting=2, timeout=10):
            order.append(i)
            await release.wait()

    tasks = [asyncio.create_task(job(i)) for i in range(3)]
    while gate.waiting < 2:  # noqa: ASYNC110 (polling state under test)
        await asyncio.sleep(0)
    with pytest.raises(QueueFull):
        async with gate.queued_slot(max_waiting=2, timeout=10):
            pass
    release.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2] and await gate.wait_idle(1)
    release.clear()
    holder = asyncio.create_task(job(9))
    while gate.in_flight < 1:  # noqa: ASYNC110 (polling state under test)
        await asyncio.sleep(0)
    with pytest.raises(QueueTimeout):
        async with gate.queued_slot(max_waiting=2, timeout=0.01):
            pass
    release.set()
    await holder


class _Probe:
    def __init__(self) -> None:
        self.ready = False

    async def is_model_ready(self) -> bool:
        return self.ready


async def test_health_states_and_fatal_task_mismatch() -> None:
    probe = _Probe()
    readiness = Readiness(probe, 1.0, AdapterMetrics())
    await readiness.check_once()
    assert readiness.health(busy=False) == "LOADING"
    probe.ready = True
    await readiness.check_once()
    assert (readiness.health(False), readiness.health(True)) == ("IDLE", "OK")
    probe.ready = False
    await readiness.check_once()
    assert readiness.health(False) == "ERROR"

    async def verify() -> None:
        check_task(
            {"config": {"parameters": {"task": {"string_value": "upscale"}}}}, "image-to-text", "model"
        )

    probe.ready = True
    wrong = Readiness(probe, 1.0, AdapterMetrics(), verify=verify)
    assert await wrong.check_once() is False
    assert wrong.fatal_event.is_set() and "serves task 'upscale'" in (wrong.fatal or "")
    assert wrong.health(False) == "ERROR"


def test_task_parameter_is_read_from_either_config_form() -> None:
    assert configured_task({"parameters": {"task": {"string_value": "upscale"}}}) == "upscale"
    assert configured_task({"config": {"parameters": {}}}) is None
    check_task({"parameters": {"task": {"string_value": "upscale"}}}, "upscale", "m")
    with pytest.raises(IncompatibleModel, match="no 'task' parameter"):
        check_task({"parameters": {}}, "upscale", "m")
