"""The transformers runtimes against the same tiny models called directly through transformers' own API.

Each family is built once per module in both file layouts (transformers-5 and the older Hub one);
a runtime's output must equal the direct call on the same inputs (bit-equal where the computation is
the same; 1e-5 where a batch of two runs as one forward pass), both layouts must give the same
output, bad requests must raise InvalidRequest and broken snapshots IncompatibleModel naming the fix.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lpbyoc_worker.runtimes import detect
from lpbyoc_worker.runtimes.base import Device, IncompatibleModel, InvalidRequest, TaskRequest
from lpbyoc_worker.runtimes.registry import load_runtime

from tests.support import tiny_transformers as tt

CPU = Device("cpu")
BATCH_ATOL = 1e-5


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models are all per-op overhead: a second OpenMP thread only adds barriers, and on a busy
    2-core box (another test run beside this one) those barriers spin and slow Whisper 50-fold."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """Every family in both layouts, same seed, so the two layouts hold the same weights."""
    root = tmp_path_factory.mktemp("tiny-transformers")
    built = {}
    for task, build in tt.BUILDERS.items():
        for layout in tt.LAYOUTS:
            built[task, layout] = build(root / f"{task}-{layout}", layout=layout)
    return built


@pytest.fixture(scope="module")
def runtimes(snapshots: dict[tuple[str, str], Path]) -> dict[tuple[str, str], object]:
    """Each runtime loaded through the registry, per layout (loaded once: they are resident)."""
    return {key: load_runtime(key[0], path, CPU) for key, path in snapshots.items()}


def hub(runtimes: dict, task: str):  # the runtime the reference comparisons use
    return runtimes[task, tt.HUB]


def copy_without(source: Path, target: Path, *names: str) -> Path:
    shutil.copytree(source, target)
    for name in names:
        (target / name).unlink()
    return target


# --- detection --------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", tt.LAYOUTS)
@pytest.mark.parametrize("task", list(tt.BUILDERS))
def test_detect_classifies_each_tiny_snapshot_with_its_task(snapshots, task: str, layout: str) -> None:
    info = detect.inspect_snapshot(snapshots[task, layout])
    assert info.format == detect.TRANSFORMERS
    assert set(info.tasks) == {task}  # a set: detect lists depth-estimation twice (explicit + suffix rule)
    assert info.problems == ()
    assert info.weight_dtype == "F32"
    detect.check_serves(info, task)


# --- depth ------------------------------------------------------------------------------------------


def direct_depth(model_dir: Path, image: np.ndarray) -> np.ndarray:
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    processor = AutoImageProcessor.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForDepthEstimation.from_pretrained(model_dir, local_files_only=True).eval()
    with torch.inference_mode():
        out = model(**processor(images=image, return_tensors="pt"))
    return processor.post_process_depth_estimation(out, target_sizes=[image.shape[:2]])[0][
        "predicted_depth"
    ].numpy()


def test_depth_equals_the_model_called_directly(snapshots, runtimes) -> None:
    image = tt.random_image(40, 56, seed=1)
    result = hub(runtimes, "depth-estimation").run(TaskRequest(image=image))
    depth = result.tensors["DEPTH"]
    assert depth.shape == (40, 56) and depth.dtype == np.float32
    np.testing.assert_array_equal(depth, direct_depth(snapshots["depth-estimation", tt.HUB], image))
    assert result.data == {"min": float(depth.min()), "max": float(depth.max())}


def test_depth_batch_of_two_equals_two_single_runs_and_keeps_a_bad_request_apart(runtimes) -> None:
    runtime = hub(runtimes, "depth-estimation")
    images = [tt.random_image(40, 56, seed=s) for s in (2, 3)]
    odd = tt.random_image(33, 45, seed=4)  # another shape: its own forward pass
    batch = runtime.run_batch(
        [
            TaskRequest(image=images[0]),
            TaskRequest(image=None),
            TaskRequest(image=odd),
            TaskRequest(image=images[1]),
        ]
    )
    assert isinstance(batch[1], InvalidRequest)
    for got, image in zip((batch[0], batch[2], batch[3]), (images[0], odd, images[1]), strict=True):
        single = runtime.run(TaskRequest(image=image)).tensors["DEPTH"]
        np.testing.assert_allclose(got.tensors["DEPTH"], single, atol=BATCH_ATOL, rtol=0)


# --- segmentation -----------------------------------------------------------------------------------


def direct_segmentation(model_dir: Path, image: np.ndarray) -> np.ndarray:
    from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

    processor = AutoImageProcessor.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForSemanticSegmentation.from_pretrained(model_dir, local_files_only=True).eval()
    with torch.inference_mode():
        out = model(**processor(images=image, return_tensors="pt"))
    return processor.post_process_semantic_segmentation(out, target_sizes=[image.shape[:2]])[0].numpy()


def test_segmentation_equals_the_model_called_directly(snapshots, runtimes) -> None:
    image = tt.random_image(48, 36, seed=5)
    result = hub(runtimes, "image-segmentation").run(TaskRequest(image=image))
    labels = result.tensors["LABELS"]
    assert labels.shape == (48, 36) and labels.dtype == np.int32
    np.testing.assert_array_equal(labels, direct_segmentation(snapshots["image-segmentation", tt.HUB], image))
    present = sorted(int(i) for i in np.unique(labels))
    assert result.data["labels"] == {str(i): tt.SEGFORMER_LABELS[i] for i in present}


def test_segmentation_batch_of_two_equals_two_single_runs(runtimes) -> None:
    runtime = hub(runtimes, "image-segmentation")
    images = [tt.random_image(32, 32, seed=s) for s in (6, 7)]
    batch = runtime.run_batch([TaskRequest(image=i) for i in images])
    for got, image in zip(batch, images, strict=True):
        np.testing.assert_array_equal(
            got.tensors["LABELS"], runtime.run(TaskRequest(image=image)).tensors["LABELS"]
        )


# --- SAM2 -------------------------------------------------------------------------------------------


def direct_sam2(model_dir: Path, image: np.ndarray, multimask: bool, **prompts: list) -> tuple:
    """Sam2Model on pixel values made the way Sam2ImageProcessor does (resize, rescale, ImageNet mean/std)
    and prompts scaled to its 64-px input the way Sam2Processor does."""
    from PIL import Image
    from transformers import Sam2Model

    size = tt.SAM2_IMAGE_SIZE
    model = Sam2Model.from_pretrained(model_dir, local_files_only=True).eval()
    resized = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR), np.float32) / 255
    mean, std = tt.SAM2_PROCESSOR["image_mean"], tt.SAM2_PROCESSOR["image_std"]
    pixels = torch.from_numpy(((resized - np.float32(mean)) / np.float32(std)).transpose(2, 0, 1))[None]
    height, width = image.shape[:2]
    scale = torch.tensor([size / width, size / height], dtype=torch.float64)
    inputs = {}
    if "points" in prompts:
        inputs["input_points"] = (torch.tensor(prompts["points"], dtype=torch.float64) * scale).float()[
            None, None
        ]
        inputs["input_labels"] = torch.tensor(prompts["labels"])[None, None]
    if "box" in prompts:
        inputs["input_boxes"] = (torch.tensor(prompts["box"], dtype=torch.float64) * scale.repeat(2)).float()[
            None, None
        ]
    with torch.inference_mode():
        out = model(pixel_values=pixels, multimask_output=multimask, **inputs)
    low_res = out.pred_masks[0, 0]
    masks = F.interpolate(low_res[None], size=(height, width), mode="bilinear", align_corners=False)[0]
    return masks.numpy(), low_res.numpy(), out.iou_scores[0, 0].tolist()


def test_sam2_points_give_three_masks_equal_to_the_model_called_directly(snapshots, runtimes) -> None:
    image = tt.random_image(40, 60, seed=8)
    points, labels = [[10.0, 12.0], [45.0, 30.0]], [1, 0]
    result = hub(runtimes, "segment-anything-2").run(
        TaskRequest(image=image, params={"point_coords": points, "point_labels": labels})
    )
    masks, logits, scores = direct_sam2(
        snapshots["segment-anything-2", tt.HUB], image, True, points=points, labels=labels
    )
    assert result.tensors["MASKS"].shape == (3, 40, 60) and result.tensors["MASKS"].dtype == np.float32
    assert result.tensors["LOGITS"].shape == (3, 16, 16) and result.tensors["LOGITS"].dtype == np.float32
    np.testing.assert_allclose(result.tensors["MASKS"], masks, atol=1e-5, rtol=0)
    np.testing.assert_allclose(result.tensors["LOGITS"], logits, atol=1e-5, rtol=0)
    np.testing.assert_allclose(result.data["scores"], scores, atol=1e-6)


def test_sam2_box_single_mask_thresholded_and_json_string_params(snapshots, runtimes) -> None:
    image = tt.random_image(48, 48, seed=9)
    box = [4.0, 6.0, 30.0, 40.0]
    params = {"box": "[4, 6, 30, 40]", "multimask_output": "false", "return_logits": False}
    result = hub(runtimes, "segment-anything-2").run(TaskRequest(image=image, params=params))
    masks, logits, scores = direct_sam2(snapshots["segment-anything-2", tt.HUB], image, False, box=box)
    assert result.tensors["MASKS"].shape == (1, 48, 48)
    assert set(np.unique(result.tensors["MASKS"])) <= {0.0, 1.0}
    np.testing.assert_array_equal(result.tensors["MASKS"], (masks > 0).astype(np.float32))
    np.testing.assert_allclose(result.tensors["LOGITS"], logits, atol=1e-5, rtol=0)
    np.testing.assert_allclose(result.data["scores"], scores, atol=1e-6)
    assert len(scores) == 1


def test_sam2_unnormalized_coords_are_fractions_and_mask_input_feeds_back(runtimes) -> None:
    runtime = hub(runtimes, "segment-anything-2")
    image = tt.random_image(40, 60, seed=10)
    pixels = runtime.run(TaskRequest(image=image, params={"point_coords": [[30, 10]], "point_labels": [1]}))
    fractions = runtime.run(
        TaskRequest(
            image=image,
            params={"point_coords": [[0.5, 0.25]], "point_labels": [1], "normalize_coords": False},
        )
    )
    np.testing.assert_allclose(fractions.tensors["MASKS"], pixels.tensors["MASKS"], atol=1e-5)
    refined = runtime.run(
        TaskRequest(
            image=image,
            params={
                "point_coords": [[30, 10]],
                "point_labels": [1],
                "mask_input": pixels.tensors["LOGITS"][:1].tolist(),
                "multimask_output": False,
            },
        )
    )
    assert refined.tensors["MASKS"].shape == (1, 40, 60)
    assert not np.allclose(refined.tensors["LOGITS"], pixels.tensors["LOGITS"][:1])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"point_coords": [[1, 2]]}, "point_coords and point_labels go together"),
        ({"point_labels": [1]}, "point_coords and point_labels go together"),
        ({"point_coords": [[1, 2], [3, 4]], "point_labels": [1]}, "1 entries for 2 point_coords"),
        ({"point_coords": [1, 2], "point_labels": [1]}, r"\[x, y\] pairs"),
        ({"point_coords": [[1, 2]], "point_labels": [2]}, "1 \\(foreground\\) or 0"),
        ({"point_coords": [[1, "a"]], "point_labels": [1]}, "must be numbers"),
        ({"box": [1, 2, 3]}, r"box must be \[x1, y1, x2, y2\]"),
        ({"box": [10, 2, 3, 8]}, "x2 >= x1"),
        ({"box": "[1, 2,"}, "not valid JSON"),
        ({"mask_input": [[0.0] * 4] * 4}, "mask_input must be 1x16x16"),
        ({"multimask_output": "maybe"}, "multimask_output must be true or false"),
    ],
)
def test_sam2_bad_prompts_are_invalid_requests_that_say_why(runtimes, params: dict, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        hub(runtimes, "segment-anything-2").run(TaskRequest(image=tt.random_image(32, 32), params=params))


# --- BLIP captioning --------------------------------------------------------------------------------


def direct_caption(model_dir: Path, image: np.ndarray, prompt: str | None, max_new_tokens: int) -> str:
    from transformers import BlipForConditionalGeneration, BlipProcessor

    processor = BlipProcessor.from_pretrained(model_dir, local_files_only=True)
    model = BlipForConditionalGeneration.from_pretrained(model_dir, local_files_only=True).eval()
    with torch.inference_mode():
        ids = model.generate(
            **processor(images=image, text=prompt, return_tensors="pt"), max_new_tokens=max_new_tokens
        )
    return processor.decode(ids[0], skip_special_tokens=True).strip()


@pytest.mark.parametrize("prompt", [None, "a photo of"])
def test_caption_equals_blip_generate_called_directly(snapshots, runtimes, prompt: str | None) -> None:
    image = tt.random_image(40, 40, seed=11)
    params = {"max_new_tokens": 8} | ({"prompt": prompt} if prompt else {})
    result = hub(runtimes, "image-to-text").run(TaskRequest(image=image, params=params))
    assert result.tensors == {}
    assert result.data == {"text": direct_caption(snapshots["image-to-text", tt.HUB], image, prompt, 8)}
    assert result.data["text"]
    if prompt:
        assert result.data["text"].startswith(prompt)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens must be an integer in 1..128"),
        ({"max_new_tokens": 1000}, "max_new_tokens"),
        ({"prompt": 3}, "prompt must be a string"),
        ({"prompt": " ".join(["cat"] * 60)}, "shorten the prompt"),
    ],
)
def test_caption_bad_params_are_invalid_requests(runtimes, params: dict, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        hub(runtimes, "image-to-text").run(TaskRequest(image=tt.random_image(32, 32), params=params))


# --- Whisper ----------------------------------------------------------------------------------------


def direct_transcription(model_dir: Path, audio: np.ndarray, **kwargs: object) -> dict:
    from transformers import AutoProcessor, WhisperForConditionalGeneration, pipeline

    processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
    model = WhisperForConditionalGeneration.from_pretrained(model_dir, local_files_only=True).eval()
    asr = pipeline(
        "automatic-speech-recognition",
        model=model,
        tokenizer=processor.tokenizer,
        feature_extractor=processor.feature_extractor,
    )
    with torch.inference_mode():
        return asr({"raw": audio, "sampling_rate": tt.SAMPLING_RATE}, **kwargs)


def test_transcription_equals_the_asr_pipeline_called_directly(snapshots, runtimes) -> None:
    audio = tt.tone(1.5)
    result = hub(runtimes, "audio-to-text").run(TaskRequest(audio=audio))
    direct = direct_transcription(snapshots["audio-to-text", tt.HUB], audio, return_timestamps=True)
    assert result.data["text"] == direct["text"]
    assert [c["text"] for c in result.data["chunks"]] == [c["text"] for c in direct["chunks"]]
    for got, want in zip(result.data["chunks"], direct["chunks"], strict=True):
        start, end = want["timestamp"]
        assert got["timestamp"] == [start, 1.5 if end is None else end]
        assert all(isinstance(t, float) for t in got["timestamp"])


def test_audio_past_30_seconds_is_chunked_as_the_pipeline_chunks_it(snapshots, runtimes) -> None:
    audio = tt.tone(31.0, frequency=200.0)
    result = hub(runtimes, "audio-to-text").run(TaskRequest(audio=audio))
    direct = direct_transcription(
        snapshots["audio-to-text", tt.HUB], audio, return_timestamps=True, chunk_length_s=30
    )
    assert result.data["text"] == direct["text"]
    assert len(result.data["chunks"]) == len(direct["chunks"])


def test_an_unclosed_chunk_ends_at_the_audio_end() -> None:
    from lpbyoc_worker.runtimes.speech import chunk_json

    assert chunk_json({"timestamp": (1.25, None), "text": " hi"}, 2.5) == {
        "timestamp": [1.25, 2.5],
        "text": " hi",
    }
    assert chunk_json({"timestamp": (3.0, None), "text": ""}, 2.5)["timestamp"] == [3.0, 3.0]


# Word times with a 1-token transcript make DTW's std over one row (a numpy-style warning, harmless).
@pytest.mark.filterwarnings("ignore:std\\(\\)")
def test_transcription_timestamp_modes(runtimes) -> None:
    runtime = hub(runtimes, "audio-to-text")
    audio = tt.tone(1.0, frequency=300.0)
    plain = runtime.run(TaskRequest(audio=audio, params={"return_timestamps": "false"}))
    assert plain.data["chunks"] == [] and isinstance(plain.data["text"], str)
    sentence = runtime.run(TaskRequest(audio=audio, params={"return_timestamps": "sentence"}))
    assert sentence.data == runtime.run(TaskRequest(audio=audio, params={"return_timestamps": True})).data
    words = runtime.run(TaskRequest(audio=audio, params={"return_timestamps": "word", "language": "en"}))
    for chunk in words.data["chunks"]:
        start, end = chunk["timestamp"]
        assert isinstance(start, float) and isinstance(end, float) and end >= start


@pytest.mark.parametrize(
    ("audio", "params", "message"),
    [
        (None, {}, "float32 mono audio"),
        (np.zeros((2, 16000), np.float32), {}, "float32 mono audio"),
        (np.zeros(16000, np.float64), {}, "float32 mono audio"),
        (np.zeros(0, np.float32), {}, "at least 0.1 s"),
        (np.zeros(800, np.float32), {}, "at least 0.1 s"),
        (np.full(16000, np.nan, np.float32), {}, "NaN"),
        (tt.tone(1.0), {"return_timestamps": "paragraph"}, "return_timestamps must be"),
        (tt.tone(1.0), {"language": "fr"}, "English-only"),
    ],
)
def test_transcription_bad_inputs_are_invalid_requests(runtimes, audio, params: dict, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        hub(runtimes, "audio-to-text").run(TaskRequest(audio=audio, params=params))


# --- both layouts, broken snapshots -----------------------------------------------------------------

LAYOUT_REQUESTS = {
    "depth-estimation": TaskRequest(image=tt.random_image(36, 44, seed=12)),
    "image-segmentation": TaskRequest(image=tt.random_image(36, 44, seed=12)),
    "segment-anything-2": TaskRequest(
        image=tt.random_image(36, 44, seed=12), params={"point_coords": [[5, 5]], "point_labels": [1]}
    ),
    "image-to-text": TaskRequest(
        image=tt.random_image(36, 44, seed=12), params={"prompt": "a", "max_new_tokens": 6}
    ),
    "audio-to-text": TaskRequest(audio=tt.tone(1.0, frequency=500.0)),
}


@pytest.mark.parametrize("task", list(tt.BUILDERS))
def test_both_file_layouts_load_and_give_equal_outputs(runtimes, task: str) -> None:
    request = LAYOUT_REQUESTS[task]
    new, old = (runtimes[task, layout].run(request) for layout in (tt.TRANSFORMERS5, tt.HUB))
    assert new.data == old.data
    assert new.tensors.keys() == old.tensors.keys()
    for name in new.tensors:
        np.testing.assert_array_equal(new.tensors[name], old.tensors[name])


@pytest.mark.parametrize(
    ("task", "layout", "removed", "message"),
    [
        ("depth-estimation", tt.HUB, ("preprocessor_config.json",), "preprocessor_config.json"),
        ("image-segmentation", tt.TRANSFORMERS5, ("processor_config.json",), "preprocessor_config.json"),
        ("segment-anything-2", tt.HUB, ("preprocessor_config.json",), "preprocessor_config.json"),
        ("image-to-text", tt.TRANSFORMERS5, ("tokenizer.json", "tokenizer_config.json"), "tokenizer files"),
        ("audio-to-text", tt.HUB, ("preprocessor_config.json",), "preprocessor_config.json"),
    ],
)
def test_a_snapshot_missing_its_processor_files_is_incompatible_naming_the_file(
    snapshots, tmp_path: Path, task: str, layout: str, removed: tuple[str, ...], message: str
) -> None:
    broken = copy_without(snapshots[task, layout], tmp_path / "broken", *removed)
    with pytest.raises(IncompatibleModel, match=message):
        load_runtime(task, broken, CPU)


def test_a_snapshot_of_another_architecture_is_incompatible_naming_its_class(snapshots) -> None:
    with pytest.raises(
        IncompatibleModel, match="SegformerForSemanticSegmentation cannot serve depth-estimation"
    ):
        load_runtime("depth-estimation", snapshots["image-segmentation", tt.HUB], CPU)
    with pytest.raises(IncompatibleModel, match="BlipForConditionalGeneration cannot serve audio-to-text"):
        load_runtime("audio-to-text", snapshots["image-to-text", tt.HUB], CPU)
