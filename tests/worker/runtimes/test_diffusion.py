"""The diffusers runtimes against real diffusers pipelines of the real architectures (tiny weights).

The reference for every output is the same snapshot loaded with plain `from_pretrained` and called
in this process with the same arguments and seeded generators, its images converted by diffusers
itself (output_type="pil"): the runtime must add nothing and lose nothing.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import (
    AutoPipelineForImage2Image,
    AutoPipelineForText2Image,
    StableDiffusionUpscalePipeline,
    StableVideoDiffusionPipeline,
)
from lpbyoc_worker.runtimes import diffusion
from lpbyoc_worker.runtimes.base import Device, IncompatibleModel, InvalidRequest, TaskRequest
from lpbyoc_worker.runtimes.diffusion import ImageToImage, ImageToVideo, TextToImage, Upscale
from lpbyoc_worker.runtimes.registry import load_runtime
from PIL import Image

from tests.support import tiny_diffusers

CPU = Device("cpu")
PROMPT = "the cat on the mat"
SIZE = {"height": 32, "width": 48}
STEPS = 2
# Image i of a batch against a one-image request with seed + i: the same starting latents, but
# batched kernels (and classifier-free guidance's doubled batch) may round differently: seen at
# most one uint8 level apart, on some pixels, depending on seed and layout.
BATCH_TOLERANCE = 1


def input_image(height: int = 32, width: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def pil_arrays(images: list[Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(image) for image in images])


def seeded(seed: int, count: int = 1) -> list[torch.Generator]:
    return [torch.Generator("cpu").manual_seed(seed + i) for i in range(count)]


def images_of(runtime: Any, params: dict[str, Any], image: np.ndarray | None = None) -> np.ndarray:
    return runtime.run(TaskRequest(params=params, image=image)).tensors["IMAGES"]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread: these models are too small to gain from two, and on a busy 2-core box
    OpenMP threads waiting on each other made the module several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- snapshots (built once per module) ------------------------------------------------------


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("diffusers")
    td = tiny_diffusers
    return {
        "sd": td.save_tiny_sd(root / "sd"),
        "sd-vocab": td.save_tiny_sd(root / "sd-vocab", tokenizer_layout="vocab.json"),
        "sd-checker": td.save_tiny_sd(root / "sd-checker", safety_checker="pass"),
        "sd-flagging": td.save_tiny_sd(root / "sd-flagging", safety_checker="flag"),
        "sd-fp16": td.save_tiny_sd(root / "sd-fp16", fp16_variant=True),
        "sdxl": td.save_tiny_sdxl(root / "sdxl"),
        "sdxl-vocab": td.save_tiny_sdxl(root / "sdxl-vocab", tokenizer_layout="vocab.json"),
        "upscaler": td.save_tiny_upscaler(root / "upscaler"),
        "svd": td.save_tiny_svd(root / "svd"),
    }


def reference(loader: Any, snapshot: Path, **kwargs: Any) -> Any:
    pipeline = loader.from_pretrained(snapshot, dtype=torch.float32, local_files_only=True, **kwargs)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="module")
def sd_text(snapshots: dict[str, Path]) -> TextToImage:
    return TextToImage(snapshots["sd"], CPU)


@pytest.fixture(scope="module")
def sdxl_text(snapshots: dict[str, Path]) -> TextToImage:
    return TextToImage(snapshots["sdxl"], CPU)


@pytest.fixture(scope="module")
def sd_image(snapshots: dict[str, Path]) -> ImageToImage:
    return ImageToImage(snapshots["sd"], CPU)


@pytest.fixture(scope="module")
def upscale(snapshots: dict[str, Path]) -> Upscale:
    return Upscale(snapshots["upscaler"], CPU)


@pytest.fixture(scope="module")
def video(snapshots: dict[str, Path]) -> ImageToVideo:
    return ImageToVideo(snapshots["svd"], CPU)


# --- parity with the pipeline called directly ------------------------------------------------


@pytest.mark.parametrize("layout", ["sd", "sdxl"])
def test_text_to_image_equals_the_pipeline_called_directly(snapshots: dict[str, Path], layout: str) -> None:
    runtime = TextToImage(snapshots[layout], CPU)
    result = runtime.run(
        TaskRequest(params={"prompt": PROMPT, "seed": 7, "num_inference_steps": STEPS, **SIZE})
    )
    expected = reference(AutoPipelineForText2Image, snapshots[layout])(
        prompt=PROMPT, num_inference_steps=STEPS, guidance_scale=7.5, generator=seeded(7), **SIZE
    ).images
    images = result.tensors["IMAGES"]
    assert images.dtype == np.uint8 and images.shape == (1, 32, 48, 3)
    assert np.array_equal(images, pil_arrays(expected))
    assert result.data == {"seeds": [7], "nsfw": [False], "safety_checker": False}


@pytest.mark.parametrize("layout", ["sd", "sdxl"])
def test_image_to_image_equals_the_pipeline_called_directly(snapshots: dict[str, Path], layout: str) -> None:
    runtime = ImageToImage(snapshots[layout], CPU)
    image = input_image()
    params = {"prompt": PROMPT, "seed": 3, "num_inference_steps": STEPS, "strength": 0.5}
    result = runtime.run(TaskRequest(params=params, image=image))
    expected = reference(AutoPipelineForImage2Image, snapshots[layout])(
        prompt=PROMPT,
        image=Image.fromarray(image),
        strength=0.5,
        num_inference_steps=STEPS,
        guidance_scale=7.5,
        generator=seeded(3),
    ).images
    assert result.tensors["IMAGES"].shape == (1, 32, 48, 3)
    assert np.array_equal(result.tensors["IMAGES"], pil_arrays(expected))
    assert result.data["seeds"] == [3]


def test_upscale_equals_the_pipeline_called_directly(snapshots: dict[str, Path], upscale: Upscale) -> None:
    image = input_image(16, 24)
    result = upscale.run(
        TaskRequest(params={"prompt": PROMPT, "seed": 11, "num_inference_steps": STEPS}, image=image)
    )
    expected = reference(StableDiffusionUpscalePipeline, snapshots["upscaler"])(
        prompt=PROMPT, image=Image.fromarray(image), num_inference_steps=STEPS, generator=seeded(11)
    ).images
    assert result.tensors["IMAGES"].shape == (1, 64, 96, 3)  # the 3-block VAE: 4x each side
    assert np.array_equal(result.tensors["IMAGES"], pil_arrays(expected))
    assert result.data == {"seeds": [11], "nsfw": [False], "safety_checker": False}


def test_image_to_video_equals_the_pipeline_called_directly(
    snapshots: dict[str, Path], video: ImageToVideo
) -> None:
    image = input_image(40, 56)
    params = {"seed": 5, "num_inference_steps": STEPS, "fps": 8, "motion_bucket_id": 100, **SIZE}
    result = video.run(TaskRequest(params=params, image=image))
    expected = reference(StableVideoDiffusionPipeline, snapshots["svd"])(
        image=Image.fromarray(image),
        num_inference_steps=STEPS,
        fps=8,
        motion_bucket_id=100,
        noise_aug_strength=0.02,
        decode_chunk_size=ImageToVideo.DECODE_CHUNK_SIZE,
        generator=torch.Generator("cpu").manual_seed(5),
        **SIZE,
    ).frames[0]
    frames = result.tensors["FRAMES"]
    assert frames.dtype == np.uint8
    assert frames.shape == (tiny_diffusers.SVD_NUM_FRAMES, 32, 48, 3)
    assert np.array_equal(frames, pil_arrays(expected))
    assert result.data == {"seed": 5, "fps": 8, "nsfw": False, "safety_checker": False}


# --- seeds ----------------------------------------------------------------------------------


def test_a_seed_names_an_image(sd_text: TextToImage) -> None:
    params = {"prompt": PROMPT, "num_inference_steps": STEPS, **SIZE}
    first = images_of(sd_text, {**params, "seed": 1})
    assert np.array_equal(first, images_of(sd_text, {**params, "seed": 1}))
    assert not np.array_equal(first, images_of(sd_text, {**params, "seed": 2}))


def test_a_seed_names_a_video(video: ImageToVideo) -> None:
    image = input_image()
    params = {"num_inference_steps": 1, **SIZE}

    def frames(seed: int) -> np.ndarray:
        return video.run(TaskRequest(params={**params, "seed": seed}, image=image)).tensors["FRAMES"]

    assert np.array_equal(frames(1), frames(1))
    assert not np.array_equal(frames(1), frames(2))


@pytest.mark.parametrize(("layout", "task"), [("sd", "text"), ("sdxl", "text"), ("sd", "image")])
def test_image_i_of_a_batch_is_the_image_of_seed_plus_i(
    snapshots: dict[str, Path], layout: str, task: str
) -> None:
    runtime_class, image = (TextToImage, None) if task == "text" else (ImageToImage, input_image())
    runtime = runtime_class(snapshots[layout], CPU)
    params = {"prompt": PROMPT, "num_inference_steps": STEPS, **(SIZE if image is None else {})}
    result = runtime.run(TaskRequest(params={**params, "seed": 20, "num_images_per_prompt": 2}, image=image))
    batch = result.tensors["IMAGES"]
    assert batch.shape[0] == 2 and result.data["seeds"] == [20, 21]
    assert result.data["nsfw"] == [False, False]
    for i, seed in enumerate((20, 21)):
        alone = images_of(runtime, {**params, "seed": seed}, image)[0]
        assert np.abs(batch[i].astype(int) - alone.astype(int)).max() <= BATCH_TOLERANCE
    assert not np.array_equal(batch[0], batch[1])


# --- safety checker ---------------------------------------------------------------------------


def test_a_snapshot_checker_runs_and_reports_per_image(snapshots: dict[str, Path]) -> None:
    runtime = TextToImage(snapshots["sd-checker"], CPU)
    params = {"prompt": PROMPT, "seed": 4, "num_inference_steps": STEPS, "num_images_per_prompt": 2, **SIZE}
    result = runtime.run(TaskRequest(params=params))
    expected = reference(AutoPipelineForText2Image, snapshots["sd-checker"])(
        prompt=PROMPT, num_inference_steps=STEPS, num_images_per_prompt=2, generator=seeded(4, 2), **SIZE
    )
    assert result.data["safety_checker"] is True
    assert result.data["nsfw"] == [False, False] == expected.nsfw_content_detected
    assert np.array_equal(result.tensors["IMAGES"], pil_arrays(expected.images))


def test_a_flagged_image_is_reported_and_comes_back_black_as_from_the_pipeline(
    snapshots: dict[str, Path],
) -> None:
    runtime = TextToImage(snapshots["sd-flagging"], CPU)
    params = {"prompt": PROMPT, "seed": 4, "num_inference_steps": STEPS, **SIZE}
    result = runtime.run(TaskRequest(params=params))
    expected = reference(AutoPipelineForText2Image, snapshots["sd-flagging"])(
        prompt=PROMPT, num_inference_steps=STEPS, generator=seeded(4), **SIZE
    )
    assert result.data["nsfw"] == [True] == expected.nsfw_content_detected
    assert result.data["safety_checker"] is True
    assert not result.tensors["IMAGES"].any()
    assert np.array_equal(result.tensors["IMAGES"], pil_arrays(expected.images))


def test_safety_check_false_skips_the_checker_and_says_so(snapshots: dict[str, Path]) -> None:
    runtime = TextToImage(snapshots["sd-flagging"], CPU)
    params = {"prompt": PROMPT, "seed": 4, "num_inference_steps": STEPS, "safety_check": False, **SIZE}
    result = runtime.run(TaskRequest(params=params))
    unchecked = reference(AutoPipelineForText2Image, snapshots["sd-flagging"], safety_checker=None)(
        prompt=PROMPT, num_inference_steps=STEPS, generator=seeded(4), **SIZE
    ).images
    assert result.data["nsfw"] == [False] and result.data["safety_checker"] is False
    assert np.array_equal(result.tensors["IMAGES"], pil_arrays(unchecked))


def test_a_snapshot_that_lists_a_checker_it_lacks_still_loads(
    snapshots: dict[str, Path], tmp_path: Path
) -> None:
    """A requires_safety_checker snapshot whose checker allowPatterns left out (model_index.json
    still names StableDiffusionSafetyChecker): it loads without one and says none ran."""
    snapshot = tmp_path / "sd"
    shutil.copytree(snapshots["sd-checker"], snapshot)
    shutil.rmtree(snapshot / "safety_checker")
    index = json.loads((snapshot / "model_index.json").read_text())
    assert (
        index["requires_safety_checker"] is True
        and index["safety_checker"][1] == "StableDiffusionSafetyChecker"
    )
    result = TextToImage(snapshot, CPU).run(
        TaskRequest(params={"prompt": PROMPT, "seed": 1, "num_inference_steps": 1, **SIZE})
    )
    assert result.data["safety_checker"] is False and result.data["nsfw"] == [False]


# --- snapshot layouts -----------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["sd", "sdxl"])
def test_both_tokenizer_layouts_load_and_agree(snapshots: dict[str, Path], layout: str) -> None:
    modern, legacy = snapshots[layout], snapshots[f"{layout}-vocab"]
    assert {p.name for p in (modern / "tokenizer").iterdir()} == {"tokenizer.json", "tokenizer_config.json"}
    assert {"vocab.json", "merges.txt"} <= {p.name for p in (legacy / "tokenizer").iterdir()}
    assert not (legacy / "tokenizer" / "tokenizer.json").exists()
    params = {"prompt": PROMPT, "seed": 9, "num_inference_steps": 1, **SIZE}
    assert np.array_equal(
        images_of(TextToImage(modern, CPU), params), images_of(TextToImage(legacy, CPU), params)
    )


def test_an_fp16_variant_only_snapshot_loads_upcast_on_the_cpu(snapshots: dict[str, Path]) -> None:
    snapshot = snapshots["sd-fp16"]
    weights = sorted(p.name for p in snapshot.rglob("*.safetensors"))
    assert weights and all(name.endswith(".fp16.safetensors") for name in weights)
    runtime = TextToImage(snapshot, CPU)
    assert runtime.variant == "fp16"
    assert runtime.pipeline.unet.dtype == torch.float32
    params = {"prompt": PROMPT, "seed": 2, "num_inference_steps": STEPS, **SIZE}
    expected = reference(AutoPipelineForText2Image, snapshot, variant="fp16")(
        prompt=PROMPT, num_inference_steps=STEPS, generator=seeded(2), **SIZE
    ).images
    assert np.array_equal(images_of(runtime, params), pil_arrays(expected))


def test_plain_weights_load_without_a_variant(sd_text: TextToImage) -> None:
    assert sd_text.variant is None


def test_a_snapshot_mixing_variant_only_and_plain_components_loads(
    snapshots: dict[str, Path], tmp_path: Path
) -> None:
    """Only the UNet as fp16 (an allowPatterns that took `unet/*.fp16.safetensors`): the variant
    is asked for, and the components without one load their plain weights."""
    snapshot = tmp_path / "sd"
    shutil.copytree(snapshots["sd"], snapshot)
    (snapshot / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    shutil.copy(snapshots["sd-fp16"] / "unet" / "diffusion_pytorch_model.fp16.safetensors", snapshot / "unet")
    runtime = TextToImage(snapshot, CPU)
    assert runtime.variant == "fp16"
    assert images_of(runtime, {**TEXT_OK, "seed": 2}).shape == (1, 32, 48, 3)


# --- the registry, the contract, incompatible snapshots ---------------------------------------


def test_the_registry_loads_each_runtime(snapshots: dict[str, Path]) -> None:
    loaded = {
        "text-to-image": load_runtime("text-to-image", snapshots["sd"], CPU),
        "image-to-image": load_runtime("image-to-image", snapshots["sdxl"], CPU),
        "upscale": load_runtime("upscale", snapshots["upscaler"], CPU),
        "image-to-video": load_runtime("image-to-video", snapshots["svd"], CPU),
    }
    assert {task: type(runtime) for task, runtime in loaded.items()} == {
        "text-to-image": TextToImage,
        "image-to-image": ImageToImage,
        "upscale": Upscale,
        "image-to-video": ImageToVideo,
    }
    assert TextToImage.media_inputs == ()
    assert ImageToImage.media_inputs == Upscale.media_inputs == ImageToVideo.media_inputs == ("IMAGE",)
    for runtime in (TextToImage, ImageToImage, Upscale):
        assert [(o.name, o.data_type, o.dims) for o in runtime.outputs] == [
            ("IMAGES", "TYPE_UINT8", (-1, -1, -1, 3))
        ]
        assert runtime.batches is False
    assert [(o.name, o.data_type, o.dims) for o in ImageToVideo.outputs] == [
        ("FRAMES", "TYPE_UINT8", (-1, -1, -1, 3))
    ]


@pytest.mark.parametrize(
    ("runtime_class", "snapshot", "named"),
    [
        (TextToImage, "upscaler", "StableDiffusionUpscalePipeline"),
        (ImageToVideo, "sd", "StableDiffusionPipeline"),
        (Upscale, "svd", "StableVideoDiffusionPipeline"),
    ],
)
def test_a_snapshot_of_another_class_is_incompatible(
    snapshots: dict[str, Path], runtime_class: type, snapshot: str, named: str
) -> None:
    with pytest.raises(IncompatibleModel, match=named) as raised:
        runtime_class(snapshots[snapshot], CPU)
    assert "pick a model whose class is one of" in str(raised.value)


def test_a_class_no_runtime_serves_is_incompatible(snapshots: dict[str, Path], tmp_path: Path) -> None:
    snapshot = tmp_path / "pix2pix"
    shutil.copytree(snapshots["sd"], snapshot)
    index = json.loads((snapshot / "model_index.json").read_text())
    (snapshot / "model_index.json").write_text(
        json.dumps({**index, "_class_name": "StableDiffusionInstructPix2PixPipeline"})
    )
    with pytest.raises(
        IncompatibleModel, match="StableDiffusionInstructPix2PixPipeline cannot serve image-to-image"
    ):
        ImageToImage(snapshot, CPU)


def test_a_snapshot_missing_a_required_component_is_incompatible(
    snapshots: dict[str, Path], tmp_path: Path
) -> None:
    snapshot = tmp_path / "sd"
    shutil.copytree(snapshots["sd"], snapshot)
    shutil.rmtree(snapshot / "vae")
    with pytest.raises(IncompatibleModel, match=r"component 'vae'.*allowPatterns"):
        TextToImage(snapshot, CPU)


def test_a_directory_without_model_index_is_incompatible(tmp_path: Path) -> None:
    with pytest.raises(IncompatibleModel, match=r"model_index\.json"):
        TextToImage(tmp_path, CPU)


# --- parameters -----------------------------------------------------------------------------


class RecordingPipeline:
    """Stands in for a loaded pipeline: records the arguments a request turns into."""

    vae_scale_factor = 4

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        count = len(kwargs["generator"]) if isinstance(kwargs.get("generator"), list) else 1
        blank = np.zeros((count, 8, 8, 3), np.float32)
        return type("Output", (), {"images": blank, "frames": blank[np.newaxis]})()


class RecordingSDXLPipeline(RecordingPipeline):
    def __call__(self, prompt_2: Any = None, **kwargs: Any) -> Any:
        return super().__call__(prompt_2=prompt_2, **kwargs)


def recorded(
    runtime: Any, params: dict[str, Any], image: np.ndarray | None = None, sdxl: bool = False
) -> dict[str, Any]:
    original = runtime.pipeline
    runtime.pipeline = (RecordingSDXLPipeline if sdxl else RecordingPipeline)()
    try:
        runtime.run(TaskRequest(params=params, image=image))
        (call,) = runtime.pipeline.calls
    finally:
        runtime.pipeline = original
    return {k: v for k, v in call.items() if k not in ("generator", "image")}


def test_missing_keys_take_ai_runners_defaults(
    sd_text: TextToImage, sd_image: ImageToImage, upscale: Upscale, video: ImageToVideo
) -> None:
    image = input_image()
    assert recorded(sd_text, {"prompt": PROMPT, "seed": 1}) == {
        "prompt": PROMPT,
        "negative_prompt": None,
        "height": 576,
        "width": 1024,
        "guidance_scale": 7.5,
        "num_inference_steps": 50,
        "num_images_per_prompt": 1,
        "output_type": "np",
    }
    assert recorded(sd_image, {"prompt": PROMPT, "seed": 1}, image) == {
        "prompt": PROMPT,
        "negative_prompt": None,
        "strength": 0.8,
        "guidance_scale": 7.5,
        "num_inference_steps": 100,
        "num_images_per_prompt": 1,
        "output_type": "np",
    }
    assert recorded(upscale, {"prompt": PROMPT, "seed": 1}, image) == {
        "prompt": PROMPT,
        "num_inference_steps": 75,
        "output_type": "np",
    }
    assert recorded(video, {"seed": 1}, image) == {
        "height": 576,
        "width": 1024,
        "fps": 6,
        "motion_bucket_id": 127,
        "noise_aug_strength": 0.02,
        "num_inference_steps": 25,
        "decode_chunk_size": ImageToVideo.DECODE_CHUNK_SIZE,
        "output_type": "np",
    }


def test_a_second_prompt_goes_to_the_second_text_encoder_where_there_is_one(sd_text: TextToImage) -> None:
    params = {"prompt": "a cat|oil painting", "negative_prompt": "blur|", "seed": 1}
    sdxl = recorded(sd_text, params, sdxl=True)
    assert (sdxl["prompt"], sdxl["prompt_2"]) == ("a cat", "oil painting")
    assert (sdxl["negative_prompt"], sdxl["negative_prompt_2"]) == ("blur", None)
    single_encoder = recorded(sd_text, params)
    assert (single_encoder["prompt"], single_encoder["negative_prompt"]) == ("a cat|oil painting", "blur|")


def test_an_sdxl_second_prompt_reaches_the_real_pipeline(
    snapshots: dict[str, Path], sdxl_text: TextToImage
) -> None:
    params = {"prompt": "the cat|on the mat", "seed": 3, "num_inference_steps": 1, **SIZE}
    expected = reference(AutoPipelineForText2Image, snapshots["sdxl"])(
        prompt="the cat",
        prompt_2="on the mat",
        guidance_scale=7.5,
        num_inference_steps=1,
        generator=seeded(3),
        **SIZE,
    ).images
    assert np.array_equal(images_of(sdxl_text, params), pil_arrays(expected))


TEXT_OK = {"prompt": PROMPT, "seed": 1, "num_inference_steps": 1, **SIZE}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"height": 30}, "height must be a multiple of 8"),
        ({"width": 0}, "width must be an integer in 8..4096"),
        ({"width": 8192}, "width must be an integer in 8..4096"),
        ({"num_inference_steps": 0}, "num_inference_steps must be an integer in 1..1000"),
        ({"num_inference_steps": 1.5}, "num_inference_steps must be an integer"),
        ({"num_images_per_prompt": 9}, "num_images_per_prompt must be an integer in 1..8"),
        ({"num_images_per_prompt": 0}, "num_images_per_prompt must be an integer in 1..8"),
        ({"guidance_scale": -1}, r"guidance_scale must be a number in \[0.0, 100.0\]"),
        ({"guidance_scale": "high"}, "guidance_scale must be a number"),
        ({"safety_check": "yes"}, "safety_check must be true or false"),
        ({"prompt": None}, "text-to-image needs prompt"),
        ({"prompt": ["a", "b"]}, "prompt must be a string"),
        ({"seed": -1}, "seed must be an integer"),
        ({"seed": None}, "seed must be an integer"),
        ({"strength": 0.5}, "text-to-image does not take strength; it takes: "),
    ],
)
def test_bad_text_to_image_params_are_invalid(
    sd_text: TextToImage, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        sd_text.run(TaskRequest(params={**TEXT_OK, **change}))


IMAGE_OK = {"prompt": PROMPT, "seed": 1, "num_inference_steps": 2, "strength": 0.5}


@pytest.mark.parametrize(
    ("change", "image", "message"),
    [
        ({"strength": 0}, input_image(), r"strength must be a number in \(0.0, 1.0\]"),
        ({"strength": 1.5}, input_image(), r"strength must be a number in \(0.0, 1.0\]"),
        ({"num_inference_steps": 1}, input_image(), "num_inference_steps x strength must be at least 1"),
        ({"image_guidance_scale": 3}, input_image(), "image_guidance_scale applies only to InstructPix2Pix"),
        ({"height": 32}, input_image(), "image-to-image does not take height"),
        ({}, None, "needs an HxWx3 uint8 RGB image"),
        ({}, input_image().astype(np.float32), "needs an HxWx3 uint8 RGB image"),
        ({}, input_image(4, 32), r"the image must be 8..4096 px a side, got 32x4"),
    ],
)
def test_bad_image_to_image_requests_are_invalid(
    sd_image: ImageToImage, change: dict[str, Any], image: np.ndarray | None, message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        sd_image.run(TaskRequest(params={**IMAGE_OK, **change}, image=image))


def test_image_guidance_scale_at_ai_runners_default_is_accepted(sd_image: ImageToImage) -> None:
    params = {**IMAGE_OK, "image_guidance_scale": 1.5}
    assert images_of(sd_image, params, input_image()).shape == (1, 32, 48, 3)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fps": 0}, "fps must be an integer in 1..120"),
        ({"motion_bucket_id": -1}, "motion_bucket_id must be an integer in 0..1023"),
        ({"noise_aug_strength": 11}, r"noise_aug_strength must be a number in \[0.0, 10.0\]"),
        ({"height": 20}, "height must be a multiple of 8"),
        ({"prompt": "a cat"}, "image-to-video does not take prompt"),
    ],
)
def test_bad_image_to_video_params_are_invalid(
    video: ImageToVideo, change: dict[str, Any], message: str
) -> None:
    params = {"seed": 1, "num_inference_steps": 1, **SIZE, **change}
    with pytest.raises(InvalidRequest, match=message):
        video.run(TaskRequest(params=params, image=input_image()))


def test_an_upscale_past_the_largest_side_is_invalid(upscale: Upscale) -> None:
    with pytest.raises(InvalidRequest, match="the upscaled image would be 4096x4160"):
        upscale.run(TaskRequest(params={"prompt": PROMPT, "seed": 1}, image=input_image(1040, 1024)))


@pytest.mark.parametrize("loras", ['{"latent-consistency/lcm-lora-sdxl": 1.0}', {"nerijs/pixel-art-xl": 1.2}])
def test_loras_are_refused_never_ignored(
    sd_text: TextToImage, sd_image: ImageToImage, upscale: Upscale, loras: Any
) -> None:
    for runtime, image in ((sd_text, None), (sd_image, input_image()), (upscale, input_image(16, 16))):
        with pytest.raises(InvalidRequest, match="loras are not supported by this worker"):
            runtime.run(TaskRequest(params={"prompt": PROMPT, "seed": 1, "loras": loras}, image=image))


@pytest.mark.parametrize("loras", ["", "{}", " ", {}, None])
def test_an_empty_loras_value_is_no_loras(sd_text: TextToImage, loras: Any) -> None:
    assert images_of(sd_text, {**TEXT_OK, "loras": loras}).shape == (1, 32, 48, 3)


def test_model_id_is_accepted_and_the_snapshot_is_the_model(sd_text: TextToImage) -> None:
    params = {**TEXT_OK, "seed": 8}
    assert np.array_equal(
        images_of(sd_text, {**params, "model_id": "other/repo"}), images_of(sd_text, params)
    )


def test_module_exports_the_registered_runtimes() -> None:
    assert set(diffusion.__all__) == {"TextToImage", "ImageToImage", "Upscale", "ImageToVideo"}
