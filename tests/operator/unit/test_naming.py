"""Names, labels, hashes and paths follow docs/architecture.md; settings reject bad values."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from lpbyoc import naming
from lpbyoc.settings import DEFAULT_WORKER_IMAGE, OperatorSettings
from lpbyoc.spec import parse_spec

from .conftest import BYOC_BODY, with_changes

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def spec_with(changes: dict[str, object]):
    return parse_spec(with_changes(BYOC_BODY, {f"spec.{k}": v for k, v in changes.items()})["spec"])


def test_hash_is_sha256_of_the_arguments_json() -> None:
    expected = hashlib.sha256(json.dumps(["org/m", None], separators=(",", ":")).encode()).hexdigest()[:10]
    assert naming.h("org/m", None) == expected
    assert naming.h("a", "b") != naming.h("ab")  # argument boundaries matter


def test_cache_claim_is_shared_by_repo_and_storage_class() -> None:
    base = spec_with({})
    assert naming.cache_claim_name(base) == f"lpbyoc-cache-{naming.h('org/restyle', None)}"
    assert naming.cache_claim_name(spec_with({"model.revision": "v2"})) == naming.cache_claim_name(base)
    assert naming.cache_claim_name(spec_with({"cache.storageClassName": "fast"})) != naming.cache_claim_name(
        base
    )
    assert naming.cache_claim_name(spec_with({"cache.existingClaim": "my-weights"})) == "my-weights"


@pytest.mark.parametrize(
    "changes",
    [
        {"model.revision": "v2"},
        {"model.allowPatterns": ["*.pt"]},
        {"model.ignorePatterns": ["*.bin"]},
        {"cache.existingClaim": "other"},
        {"cache.storageClassName": "fast"},
    ],
)
def test_prefetch_job_name_changes_with_what_it_downloads(changes: dict[str, object]) -> None:
    base = naming.prefetch_job_name(spec_with({}))
    assert base.startswith("lpbyoc-prefetch-") and len(base) == len("lpbyoc-prefetch-") + 10
    assert naming.prefetch_job_name(spec_with(changes)) != base


def test_prefetch_job_name_ignores_serving_changes() -> None:
    assert naming.prefetch_job_name(spec_with({"replicas": 4})) == naming.prefetch_job_name(spec_with({}))


@pytest.mark.parametrize(
    "cr_name",
    ["restyle", "a" * 56, "a" * 57, "x" * 253, "my.dotted.name", "0-starts-with-digit"],
)
def test_worker_name_is_a_dns_label(cr_name: str) -> None:
    name = naming.worker_name(cr_name)
    assert len(name) <= 63 and DNS_1035.match(name), name
    if len("lpbyoc-" + cr_name) <= 63 and "." not in cr_name:
        assert name == f"lpbyoc-{cr_name}"


def test_long_names_stay_distinct() -> None:
    assert naming.worker_name("a" * 70 + "x") != naming.worker_name("a" * 70 + "y")
    assert naming.label_value("b" * 70 + "x") != naming.label_value("b" * 70 + "y")
    assert len(naming.label_value("b" * 100)) <= 63
    assert naming.label_value("short") == "short"


@pytest.mark.parametrize(
    ("repo", "expected"),
    [("org/model", "/cache/models/org--model/abc"), ("gpt2", "/cache/models/gpt2/abc")],
)
def test_weights_dir(repo: str, expected: str) -> None:
    assert naming.weights_dir(repo, "abc") == expected


def test_labels_and_selector() -> None:
    labels = naming.capability_labels("restyle", "worker")
    assert labels == {
        "app.kubernetes.io/managed-by": "lpbyoc",
        "app.kubernetes.io/part-of": "livepeer-byoc",
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/instance": "restyle",
        "livepeer.org/capability": "restyle",
    }
    assert naming.cache_labels(spec_with({}), "cache")["livepeer.org/cache-key"] == naming.cache_key(
        spec_with({})
    )
    assert (
        naming.worker_selector("restyle")
        == "app.kubernetes.io/component=worker,livepeer.org/capability=restyle"
    )
    assert (
        naming.endpoint("restyle", "ml", 8000, "cluster.local")
        == "http://lpbyoc-restyle.ml.svc.cluster.local:8000"
    )


def test_settings_defaults_and_env() -> None:
    default = OperatorSettings()
    assert (default.worker_image, default.prefetch_image, default.progress_port) == (
        DEFAULT_WORKER_IMAGE,
        DEFAULT_WORKER_IMAGE,
        9090,
    )
    from_env = OperatorSettings.from_env(
        {
            "LPBYOC_WORKER_IMAGE": "reg/w:1",
            "LPBYOC_PREFETCH_MAX_RETRIES": "2",
            "LPBYOC_HF_ENDPOINT": "http://hub",
            "HOME": "/x",
        }
    )
    assert (from_env.worker_image, from_env.prefetch_image) == ("reg/w:1", "reg/w:1")
    assert (from_env.prefetch_max_retries, from_env.hf_endpoint) == (2, "http://hub")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"patch_strategy": "replace"}, "patch_strategy"),
        ({"progress_port": 0}, "progress_port must be positive"),
        ({"prefetch_max_retries": -1}, "prefetch_max_retries"),
        ({"hf_endpont": "x"}, "unknown operator settings: hf_endpont"),
    ],
)
def test_settings_reject_bad_values(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OperatorSettings.from_mapping(values)
