"""Who may do what, over HTTP, on SQLite and PostgreSQL: roles, sharing, keys, quotas."""

from sqlalchemy import select, update

from mtinsar.service import auth, db, queue
from mtinsar.service.db import Job, User


def _key(factory, name: str, role: str = "scientist", quota: float | None = None) -> str:
    with factory.begin() as s:
        _, key = auth.create_user(s, name, role, quota)
    return key


def _bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def _execute(client, config, headers):
    inputs = {"source": str(config.data_dir / "inbox" / "frame")}
    return client.post("/processes/sbas/execution", json={"inputs": inputs}, headers=headers)


def _finished_job(client, config, factory, headers) -> str:
    """A job marked successful with a (tiny) result folder."""
    job_id = _execute(client, config, headers).json()["jobID"]
    result = config.job_dir(job_id) / "result"
    result.mkdir(parents=True)
    (result / "summary.json").write_text('{"n_dates": 3}')
    with factory.begin() as s:
        s.execute(update(Job).where(Job.id == job_id).values(status=db.SUCCESSFUL))
    return job_id


def test_a_viewer_cannot_submit_and_anonymous_must_sign_in(service):
    config, client, factory = service
    viewer = _bearer(_key(factory, "vic", "viewer"))
    answer = _execute(client, config, viewer)
    assert answer.status_code == 403 and "viewer" in answer.json()["detail"]
    assert _execute(client, config, {}).status_code == 401
    assert _execute(client, config, _bearer(_key(factory, "sam"))).status_code == 201


def test_private_job_is_hidden_until_shared_or_public(service):
    config, client, factory = service
    ann, bob = _bearer(_key(factory, "ann")), _bearer(_key(factory, "bob"))
    vic = {"X-API-Key": _key(factory, "vic", "viewer")}
    admin = _bearer(_key(factory, "root", "admin"))
    job_id = _finished_job(client, config, factory, ann)
    paths = [f"/jobs/{job_id}", f"/jobs/{job_id}/results", f"/jobs/{job_id}/files/summary.json"]

    def visible(headers) -> list[int]:
        return [client.get(path, headers=headers).status_code for path in paths]

    assert visible(ann) == visible(admin) == [200, 200, 200]
    for outsider in (bob, vic, {}):
        assert visible(outsider) == [404, 404, 404]  # never 403: existence does not leak
        assert client.get("/jobs", headers=outsider).json()["jobs"] == []

    shared = {"visibility": "shared", "shared_with": ["vic"]}
    assert client.put(f"/jobs/{job_id}/access", json=shared, headers=bob).status_code == 404
    answer = client.put(f"/jobs/{job_id}/access", json=shared, headers=ann)
    assert answer.json() == shared
    assert visible(vic) == [200, 200, 200] and visible(bob) == [404, 404, 404]
    assert [j["jobID"] for j in client.get("/jobs", headers=vic).json()["jobs"]] == [job_id]
    assert client.put(f"/jobs/{job_id}/access", json=shared, headers=vic).status_code == 403
    assert client.delete(f"/jobs/{job_id}", headers=vic).status_code == 403

    client.put(f"/jobs/{job_id}/access", json={"visibility": "public"}, headers=admin)
    for anyone in (bob, vic, {}):
        assert visible(anyone) == [200, 200, 200]
    client.put(f"/jobs/{job_id}/access", json={"visibility": "private"}, headers=ann)
    assert visible(vic) == [404, 404, 404]
    unknown = {"visibility": "shared", "shared_with": ["ghost"]}
    answer = client.put(f"/jobs/{job_id}/access", json=unknown, headers=ann)
    assert answer.status_code == 400 and "ghost" in answer.json()["detail"]


def test_unknown_or_revoked_keys_are_refused(service):
    _, client, factory = service
    key = _key(factory, "ann")
    admin = _bearer(_key(factory, "root", "admin"))
    assert client.get("/users/me", headers=_bearer(key)).json()["name"] == "ann"
    assert client.get("/users/me", headers={"X-API-Key": key}).json()["role"] == "scientist"
    for headers in (_bearer("mti_not-a-key"), {"X-API-Key": "wrong"}):
        answer = client.get("/processes", headers=headers)
        assert answer.status_code == 401 and "unknown or revoked" in answer.json()["detail"]
        assert answer.headers["www-authenticate"].startswith("Bearer")
    revoked = client.delete("/admin/users/ann/keys", headers=admin)
    assert revoked.json() == {"name": "ann", "revoked": 1}
    assert client.get("/users/me", headers=_bearer(key)).status_code == 401
    fresh = client.post("/admin/users/ann/keys", headers=admin).json()["api_key"]
    assert client.get("/users/me", headers=_bearer(fresh)).status_code == 200


def test_spent_quota_refuses_work_with_429(service):
    config, client, factory = service
    headers = _bearer(_key(factory, "ann", quota=10.0))
    job_id = _execute(client, config, headers).json()["jobID"]
    queue.claim(factory, "w", 60, 3)
    queue.finish(factory, job_id, "w", db.SUCCESSFUL, "finished", cpu_seconds=12.5)
    me = client.get("/users/me", headers=headers).json()
    assert me["cpu_seconds_used"] == 12.5 and me["cpu_seconds_left"] == 0
    answer = _execute(client, config, headers)
    assert answer.status_code == 429
    assert "spent the quota of 10 CPU-seconds" in answer.json()["detail"]
    admin = _bearer(_key(factory, "root", "admin"))
    raised = client.patch("/admin/users/ann", json={"quota_cpu_seconds": 100}, headers=admin)
    assert raised.json()["cpu_seconds_left"] == 87.5
    assert _execute(client, config, headers).status_code == 201
    unlimited = client.patch("/admin/users/ann", json={"quota_cpu_seconds": None}, headers=admin)
    assert unlimited.json()["quota_cpu_seconds"] is None


def test_admin_endpoints_refuse_non_admins(service):
    _, client, factory = service
    admin = _bearer(_key(factory, "root", "admin"))
    for headers, code in ((_bearer(_key(factory, "ann")), 403), ({}, 401)):
        assert client.get("/admin/users", headers=headers).status_code == code
        new = {"name": "eve", "role": "admin"}
        assert client.post("/admin/users", json=new, headers=headers).status_code == code
        patch = {"role": "admin"}
        assert client.patch("/admin/users/ann", json=patch, headers=headers).status_code == code
        assert client.post("/admin/users/ann/keys", headers=headers).status_code == code
        assert client.delete("/admin/users/ann/keys", headers=headers).status_code == code
    with factory() as s:
        assert s.scalar(select(User).where(User.name == "ann")).role == "scientist"
        assert s.scalar(select(User).where(User.name == "eve")) is None

    made = client.post(
        "/admin/users",
        json={"name": "eve", "role": "viewer", "quota_cpu_seconds": 5},
        headers=admin,
    )
    assert made.status_code == 201
    eve = made.json()
    assert eve["role"] == "viewer" and eve["api_key"].startswith("mti_")
    assert client.get("/users/me", headers=_bearer(eve["api_key"])).json()["name"] == "eve"
    again = client.post("/admin/users", json={"name": "eve", "role": "viewer"}, headers=admin)
    assert again.status_code == 409
    names = [u["name"] for u in client.get("/admin/users", headers=admin).json()]
    assert names == ["ann", "eve", "root"]
    assert client.patch("/admin/users/nobody", json={}, headers=admin).status_code == 404
