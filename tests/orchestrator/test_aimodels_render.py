"""aiModels.json rendering: golden bytes, go-livepeer's AIModelConfig keys and JSON types, conflicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from lpbyoc.orchestrator import aimodels
from lpbyoc.spec import PIPELINES

from tests.orchestrator.conftest import cr_body, view_of

GOLDEN = Path(__file__).parent / "golden" / "aiModels.json"

# core/ai.go AIModelConfig, as the contracts doc tables it: key -> JSON type(s) accepted.
AIMODEL_CONFIG_TYPES: dict[str, tuple[type, ...]] = {
    "pipeline": (str,),
    "model_id": (str,),
    "url": (str,),
    "token": (str,),
    "warm": (bool,),
    "capacity": (int,),
    "optimization_flags": (dict,),
    "gateway": (str,),
    "price_per_unit": (int, float),
    "pixels_per_unit": (int,),
    "currency": (str,),
}


def golden_views() -> list[Any]:
    restyle = cr_body("restyle", capacityPerReplica=2)
    restyle["metadata"]["creationTimestamp"] = "2026-11-23T10:00:00Z"
    upscaler = cr_body(
        "upscaler",
        capability__pipeline="upscale",
        capability__modelId="stabilityai/sd-x2-latent-upscaler",
        warm=False,
        pricing__pricePerUnit=4768371,
        pricing__pixelsPerUnit=1000000,
        pricing__currency="wei",
    )
    upscaler["metadata"]["creationTimestamp"] = "2026-11-23T10:00:01Z"
    # Same (pipeline, model_id) as restyle, created later: excluded.
    duplicate = cr_body("restyle-copy", model__repo="org/restyle")
    duplicate["metadata"]["creationTimestamp"] = "2026-11-23T10:05:00Z"
    # Worker not answering /health yet: not listed.
    starting = cr_body("starting", capability__pipeline="text-to-image")
    return [
        view_of(upscaler, ready=1),
        view_of(restyle, ready=3),
        view_of(duplicate, ready=1),
        view_of(starting, ready=0, available=False),
    ]


def test_render_matches_golden_file() -> None:
    rendered = aimodels.render_aimodels(golden_views())
    assert rendered == GOLDEN.read_text()


def test_render_is_stable_under_input_order() -> None:
    views = golden_views()
    assert aimodels.render_aimodels(list(reversed(views))) == aimodels.render_aimodels(views)


def test_every_entry_has_go_livepeer_keys_and_json_types() -> None:
    raw = aimodels.render_aimodels(golden_views())
    entries = json.loads(raw)
    assert isinstance(entries, list) and len(entries) == 2
    for entry in entries:
        assert set(entry) <= set(AIMODEL_CONFIG_TYPES), set(entry) - set(AIMODEL_CONFIG_TYPES)
        for key, value in entry.items():
            assert isinstance(value, AIMODEL_CONFIG_TYPES[key]), (key, value)
            if key != "warm":
                assert not isinstance(value, bool), key  # bool is an int in Python, not in Go
        assert entry["pipeline"] in PIPELINES
        assert entry["capacity"] >= 1
        assert entry["pixels_per_unit"] >= 1 and entry["price_per_unit"] >= 0
    # Prices are JSON numbers in the bytes, never quoted (go-livepeer parses the raw bytes as a rational).
    assert '"price_per_unit": 4768371' in raw and '"pixels_per_unit": 1000000' in raw
    by_model = {e["model_id"]: e for e in entries}
    assert by_model["org/restyle"]["capacity"] == 6  # 3 ready replicas x 2 per replica
    assert by_model["org/restyle"]["url"] == "http://lpbyoc-restyle.ml.svc.cluster.local:8000"
    assert by_model["stabilityai/sd-x2-latent-upscaler"]["warm"] is False
    assert "currency" not in by_model["org/restyle"]  # "" is go-livepeer's default: omitted like omitempty
    assert "token" not in by_model["org/restyle"]


def test_later_duplicate_claim_is_a_conflict_and_the_file_stays_valid() -> None:
    claims = [aimodels.claim_from_view(v) for v in golden_views()]
    resolution = aimodels.resolve(c for c in claims if c is not None)
    assert resolution.conflicts == {"ml/restyle-copy": "ml/restyle"}
    assert [c.name for c in resolution.listed] == ["restyle", "upscaler"]
    assert resolution.waiting == frozenset({"ml/starting"})


def test_older_claim_keeps_its_slot_while_its_worker_is_down() -> None:
    older = cr_body("first")
    older["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    newer = cr_body("second", model__repo="org/first")
    newer["metadata"]["creationTimestamp"] = "2026-02-01T00:00:00Z"
    rendered = aimodels.render_aimodels([view_of(older, ready=0, available=False), view_of(newer, ready=1)])
    assert json.loads(rendered) == []


def test_same_timestamp_breaks_ties_by_name() -> None:
    a, b = cr_body("bbb", model__repo="org/x"), cr_body("aaa", model__repo="org/x")
    a["metadata"]["creationTimestamp"] = b["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    resolution = aimodels.resolve(aimodels.claim_from_view(view_of(x)) for x in (a, b))  # type: ignore[misc]
    assert resolution.conflicts == {"ml/bbb": "ml/aaa"}


def test_scale_and_price_change_the_file_and_its_checksum() -> None:
    body = cr_body("restyle")
    base = aimodels.render_aimodels([view_of(body, ready=1)])
    scaled = aimodels.render_aimodels([view_of(body, ready=2)])
    repriced = aimodels.render_aimodels([view_of(cr_body("restyle", pricing__pricePerUnit=7), ready=1)])
    assert json.loads(scaled)[0]["capacity"] == 4
    assert json.loads(repriced)[0]["price_per_unit"] == 7
    checksums = {aimodels.checksum(x) for x in (base, scaled, repriced)}
    assert len(checksums) == 3


@pytest.mark.parametrize("deleting", [True])
def test_deleting_capability_is_dropped(deleting: bool) -> None:
    body = cr_body("restyle")
    view = view_of(body, ready=1)
    claim = aimodels.claim_from_view(view)
    assert claim is not None
    gone = aimodels.with_observation(claim, aimodels.Observation(True, 2, view.endpoint, deleting=deleting))
    assert json.loads(aimodels.render_aimodels([gone])) == []


def test_claim_from_body_reads_status_written_by_the_reconcile() -> None:
    from tests.orchestrator.conftest import with_status

    claim = aimodels.claim_from_body(with_status(cr_body("restyle"), ready=2))
    assert claim is not None and claim.listable and claim.capacity == 4
    unavailable = aimodels.claim_from_body(with_status(cr_body("restyle"), ready=2, available=False))
    assert unavailable is not None and not unavailable.listable
    assert aimodels.claim_from_body({"metadata": {"name": "x"}, "spec": {"bogus": 1}}) is None
    byoc = cr_body("b", capability__integration="byoc")
    assert aimodels.claim_from_body(byoc) is None


def test_token_bearing_file_is_a_secret_and_placeholders_without_values() -> None:
    body = cr_body("restyle", serving__tokenSecretRef={"name": "worker-token", "key": "token"})
    objects = aimodels.render_configmaps(
        [view_of(body, ready=1), view_of(cr_body("other", orchestrator__name="orch-b"))]
    )
    kinds = {o["metadata"]["name"]: o["kind"] for o in objects}
    assert kinds == {"lpbyoc-aimodels-orch-a": "Secret", "lpbyoc-aimodels-orch-b": "ConfigMap"}
    secret = next(o for o in objects if o["kind"] == "Secret")
    entry = json.loads(secret["stringData"]["aiModels.json"])[0]
    assert entry["token"] == "$(secret worker-token/token)"
    with_value = aimodels.render_aimodels([view_of(body, ready=1)], tokens={"ml/restyle": "t0ken"})
    assert json.loads(with_value)[0]["token"] == "t0ken"


def test_configmap_object_shape() -> None:
    objects = aimodels.render_configmaps(golden_views())
    assert len(objects) == 1
    cm = objects[0]
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["name"] == "lpbyoc-aimodels-orch-a"
    assert cm["metadata"]["namespace"] == "ml"
    assert cm["metadata"]["labels"]["app.kubernetes.io/component"] == "aimodels"
    text = cm["data"]["aiModels.json"]
    assert cm["metadata"]["annotations"][aimodels.CHECKSUM_ANNOTATION] == aimodels.checksum(text)


def test_offline_render_assumes_every_replica_ready() -> None:
    body = cr_body("restyle", replicas=3)
    offline = view_of(body, ready=0, available=False)
    assert json.loads(aimodels.render_configmaps([offline])[0]["data"]["aiModels.json"]) == []
    preview = aimodels.render_configmaps([offline], assume_ready=True)[0]
    entry = json.loads(preview["data"]["aiModels.json"])[0]
    assert entry["capacity"] == 6 and entry["url"].startswith("http://lpbyoc-restyle.ml.svc")
