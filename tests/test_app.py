from starlette.testclient import TestClient


def test_healthz_answers_with_a_request_id(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}
    assert r.headers["x-request-id"].startswith("req_")


def test_incoming_request_id_is_kept(client: TestClient) -> None:
    r = client.get("/healthz", headers={"X-Request-ID": "abc-123-def"})
    assert r.headers["x-request-id"] == "abc-123-def"


def test_unknown_route_is_404(client: TestClient) -> None:
    assert client.get("/nope").status_code == 404
