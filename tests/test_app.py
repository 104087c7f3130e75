from starlette.testclient import TestClient

from server.app import create_app
from server.settings import Settings


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


def test_the_llm_client_the_app_built_is_closed_at_shutdown(settings: Settings) -> None:
    app = create_app(settings.with_(assistant="openai", openai_api_key="sk-test"))
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        assert not app.state.llm.client.is_closed()
    assert app.state.llm.client.is_closed()


def test_an_injected_llm_client_is_left_to_its_owner(settings: Settings) -> None:
    from server.chat.llm import build_llm

    llm = build_llm(settings.with_(assistant="openai", openai_api_key="sk-test"))
    app = create_app(settings, llm=llm)
    with TestClient(app):
        pass
    assert llm is not None and not llm.client.is_closed()
