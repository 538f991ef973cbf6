"""The orchestrator double answers as go-livepeer does (byoc/job_orchestrator.go,
ai/runner/live_runner.go), so tests against it mean something."""

from __future__ import annotations

import httpx

from tests.support.orchestrator_double import OrchestratorDouble

SECRET = "s3cret-orch"


async def test_byoc_status_codes_and_auth_forms(orch: OrchestratorDouble) -> None:
    async with httpx.AsyncClient(base_url=orch.url) as http:
        assert (await http.get("/capability/register")).status_code == 405
        bearer = await http.post(
            "/capability/register", headers={"Authorization": f"Bearer {SECRET}"}, content=b"{}"
        )
        assert (bearer.status_code, bearer.text.strip()) == (400, "invalid authorization")
        assert (
            await http.post("/capability/register", headers={"Authorization": SECRET}, content=b"{")
        ).status_code == 400
        quoted = await http.post(
            "/capability/register", headers={"Authorization": SECRET}, json={"name": "x", "capacity": "2"}
        )
        assert quoted.status_code == 400  # Go's int field rejects a JSON string
        ok = await http.post(
            "/capability/register",
            headers={"Authorization": SECRET},
            json={"name": "x", "url": "http://w", "capacity": 1},
        )
        assert (ok.status_code, ok.text) == (200, "ok")
        orch.capabilities["x"].load = 1
        await http.post(
            "/capability/register", headers={"Authorization": SECRET}, json={"name": "x", "capacity": 1}
        )
        assert orch.capabilities["x"].load == 0  # re-registering resets the load counter
        gone = await http.post("/capability/unregister", headers={"Authorization": SECRET}, content=b"x")
        assert (gone.status_code, gone.text) == (200, "ok") and "x" not in orch.capabilities


async def test_runner_registry_codes(orch: OrchestratorDouble) -> None:
    body = {"runner_url": "http://10.0.0.1:8000", "app": "a", "capacity": 0}
    async with httpx.AsyncClient(base_url=orch.url) as http:
        assert (
            await http.post("/runners/heartbeat", json=body, headers={"Authorization": "nope"})
        ).status_code == 401
        assert (await http.post("/runners/heartbeat", json={**body, "capacity": -1})).status_code == 400
        assert (
            await http.post("/runners/heartbeat", json={**body, "runner_url": "10.0.0.1"})
        ).status_code == 400
        first = await http.post("/runners/heartbeat", json=body, headers={"Authorization": SECRET})
        answer = first.json()
        assert (
            first.status_code == 200 and answer["heartbeat_secret"] and answer["heartbeat_interval"] == "5s"
        )
        rid, hb = answer["runner_id"], answer["heartbeat_secret"]
        assert orch.runners[rid].request["capacity"] == 1  # 0 means 1
        again = await http.post(
            "/runners/heartbeat", json={**body, "runner_id": rid}, headers={"Authorization": hb}
        )
        assert again.status_code == 200 and "heartbeat_secret" not in again.json()
        wrong = await http.post(
            "/runners/heartbeat", json={**body, "runner_id": rid}, headers={"Authorization": SECRET}
        )
        assert wrong.status_code == 401
        assert (
            await http.post(f"/runners/{rid}/unregister", headers={"Authorization": hb})
        ).status_code == 204
        assert (
            await http.post(
                "/runners/heartbeat", json={**body, "runner_id": rid}, headers={"Authorization": hb}
            )
        ).status_code == 404
