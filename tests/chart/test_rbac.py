"""The chart's RBAC is exactly the operator's list of API calls (lpbyoc.rbac): nothing more,
nothing less, scoped to the watched namespaces unless the operator watches all of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lpbyoc import rbac

from tests.chart.rendering import NAMESPACE, load_generator, merge, of_kind, render_objects
from tests.chart.test_render import BASE

Grant = tuple[str, str, tuple[str, ...]]


def grants(rules: list[dict[str, Any]]) -> list[Grant]:
    """Flatten PolicyRules into (group, resource, verbs), the shape of lpbyoc.rbac.Rule."""
    out: list[Grant] = []
    for rule in rules:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, f"unexpected rule fields: {rule}"
        out.extend((g, r, tuple(rule["verbs"])) for g in rule["apiGroups"] for r in rule["resources"])
    return out


def expected(rules: tuple[rbac.Rule, ...]) -> list[Grant]:
    return [(r.api_group, r.resource, r.verbs) for r in rules]


NAMESPACED = tuple(r for r in rbac.RULES if (r.api_group, r.resource) not in rbac.CLUSTER_SCOPED_RESOURCES)
CLUSTER_SCOPED = tuple(r for r in rbac.RULES if (r.api_group, r.resource) in rbac.CLUSTER_SCOPED_RESOURCES)


def by_name(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in of_kind(objects, kind)}


def test_generated_rules_template_is_current() -> None:
    generator = load_generator()
    assert generator.RULES_TEMPLATE not in generator.stale_files(), "run: python charts/generate.py"


def test_namespace_scope_grants_exactly_the_code_list() -> None:
    objects = render_objects(BASE)
    roles = of_kind(objects, "Role")
    assert len(roles) == 1 and roles[0]["metadata"]["namespace"] == NAMESPACE
    assert grants(roles[0]["rules"]) == expected(NAMESPACED + rbac.WORKLOAD_RULES)
    # The only cluster-wide grant is the read of cluster-scoped resources.
    cluster_roles = of_kind(objects, "ClusterRole")
    assert len(cluster_roles) == 1
    assert grants(cluster_roles[0]["rules"]) == expected(CLUSTER_SCOPED)
    assert ("storage.k8s.io", "storageclasses", ("get",)) in grants(cluster_roles[0]["rules"])


def test_all_namespaces_scope_grants_exactly_the_code_list() -> None:
    objects = render_objects(merge(BASE, {"watch": {"allNamespaces": True}}))
    cluster_roles = of_kind(objects, "ClusterRole")
    all_rules = [g for role in cluster_roles for g in grants(role["rules"])]
    assert sorted(all_rules) == sorted(
        expected(NAMESPACED + rbac.WORKLOAD_RULES + rbac.ALL_NAMESPACES_RULES + CLUSTER_SCOPED)
    )
    assert of_kind(objects, "Role") == []


@pytest.mark.parametrize(
    "scope", [{}, {"watch": {"allNamespaces": True}}, {"watch": {"namespaces": ["a", "b"]}}]
)
def test_every_role_is_bound_to_the_operator_service_account_and_nothing_else(scope: dict[str, Any]) -> None:
    objects = render_objects(merge(BASE, scope))
    roles = {
        (o["kind"], o["metadata"]["name"], o["metadata"].get("namespace"))
        for o in objects
        if o["kind"] in ("Role", "ClusterRole")
    }
    bound = set()
    for binding in of_kind(objects, "RoleBinding") + of_kind(objects, "ClusterRoleBinding"):
        ref = binding["roleRef"]
        bound.add((ref["kind"], ref["name"], binding["metadata"].get("namespace")))
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "lp-livepeer-byoc-operator", "namespace": NAMESPACE}
        ]
    assert bound == roles


def test_no_wildcards_and_no_secret_listing() -> None:
    objects = render_objects(merge(BASE, {"watch": {"allNamespaces": True}}))
    for role in of_kind(objects, "ClusterRole") + of_kind(objects, "Role"):
        for group, resource, verbs in grants(role["rules"]):
            assert "*" not in (group, resource, *verbs)
            if resource == "secrets":
                # Read by name and written (aiModels.json with tokens), never listed or watched.
                assert not {"list", "watch"} & set(verbs), verbs


def test_rbac_create_false_renders_no_rbac() -> None:
    objects = render_objects(merge(BASE, {"rbac": {"create": False}}))
    assert not [o for o in objects if o["apiVersion"].startswith("rbac.authorization.k8s.io")]


def test_two_releases_in_different_namespaces_do_not_share_cluster_roles() -> None:
    first = {
        o["metadata"]["name"]
        for o in render_objects(BASE, namespace="one")
        if o["kind"].startswith("Cluster")
    }
    second = {
        o["metadata"]["name"]
        for o in render_objects(BASE, namespace="two")
        if o["kind"].startswith("Cluster")
    }
    assert first and not first & second


def test_generator_check_flags_a_hand_edited_rules_template(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    generator = load_generator()
    edited = tmp_path / "_rbac_rules.tpl"
    edited.write_text(generator.rules_template().replace('"delete"', '"deletecollection"'))
    monkeypatch.setattr(generator, "RULES_TEMPLATE", edited)
    monkeypatch.setattr(generator, "REPO", tmp_path)
    assert generator.main(["--check"]) == 1
    assert "stale: _rbac_rules.tpl" in capsys.readouterr().err
    assert generator.main([]) == 0
    assert edited.read_text() == generator.rules_template()
