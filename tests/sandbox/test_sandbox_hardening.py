"""Issue 12: bounded request bodies, the X-Sandbox-Token on /_sandbox/*, keys and token from the env."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sandbox_helpers import KEYS, TOKEN, Api, plan

from sandbox import SandboxConfig, create_app
from sandbox.cli import sandbox_command
from sandbox.testing import PROJECT_ROOT, SandboxProcess, child_env, cli_command, read_line

CONTROL_ROUTES = [
    ("GET", "/_sandbox/faults"),
    ("POST", "/_sandbox/faults"),
    ("DELETE", "/_sandbox/faults"),
    ("GET", "/_sandbox/ledger"),
    ("GET", "/_sandbox/requests"),
    ("DELETE", "/_sandbox/requests"),
    ("GET", "/_sandbox/violations"),
    ("POST", "/_sandbox/reset-all"),
]


def _asgi_call(
    config: SandboxConfig, path: str, headers: list[tuple[bytes, bytes]], chunks: list[bytes]
) -> tuple[int, bytes, int]:
    """POST `chunks` to `path` through raw ASGI; return (status, body, chunks the app pulled)."""
    app = create_app(config)
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if pulled >= len(chunks):
            return {"type": "http.disconnect"}
        pulled += 1
        return {"type": "http.request", "body": chunks[pulled - 1], "more_body": pulled < len(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"sandbox"), (b"authorization", b"Bearer key_1"), *headers],
        "server": ("sandbox", 80),
        "client": ("127.0.0.1", 1),
    }
    asyncio.run(app(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body, pulled


def _config(**overrides: Any) -> SandboxConfig:
    settings: dict[str, Any] = {"keys": dict(KEYS), "inspect": True, "inspect_token": TOKEN}
    settings.update(overrides)
    return SandboxConfig(**settings)


def test_a_declared_length_over_the_limit_is_413_before_any_byte_is_read() -> None:
    chunks = [b"[" + b" " * 500, b"]"]
    status, body, pulled = _asgi_call(
        _config(max_body_bytes=100), "/data/plans", [(b"content-length", b"502")], chunks
    )
    assert status == 413 and b"exceeds 100 bytes" in body
    assert pulled == 0


def test_a_chunked_body_is_read_only_up_to_the_limit() -> None:
    chunks = [b"[" + b" " * 59] + [b" " * 60] * 20 + [b"]"]
    status, body, pulled = _asgi_call(_config(max_body_bytes=100), "/data/plans", [], chunks)
    assert status == 413 and b"exceeds 100 bytes" in body
    # 60 + 60 passes 100: reading stopped at the second chunk, the other 20 were never pulled.
    assert pulled == 2


def test_a_chunked_body_under_the_limit_is_applied() -> None:
    text = httpx.Request("POST", "/", json=[plan()]).content
    chunks = [text[:10], text[10:]]
    status, body, _ = _asgi_call(_config(max_body_bytes=len(text)), "/data/plans", [], chunks)
    assert status == 200 and b'"inserted"' in body


def test_a_malformed_content_length_is_400() -> None:
    status, body, pulled = _asgi_call(_config(), "/data/plans", [(b"content-length", b"12x")], [b"[]"])
    assert status == 400 and b"Content-Length" in body and pulled == 0


def test_control_bodies_are_capped_at_64_kib(api: Api) -> None:
    big = b'{"latency_ms": 1, "x": "' + b"a" * (64 * 1024) + b'"}'
    response = api.post("/_sandbox/faults", big)
    assert response.status_code == 413
    assert api.get("/_sandbox/faults").json()["latency_ms"] == 0
    # Chunked too: the cap holds without a Content-Length.
    status, _, pulled = _asgi_call(_config(), "/_sandbox/faults", [(b"x-sandbox-token", TOKEN.encode())],
                                   [b"{" + b" " * 40_000] * 3 + [b"}"])
    assert status == 413 and pulled == 2


@pytest.mark.parametrize(("method", "path"), CONTROL_ROUTES)
def test_without_a_token_configured_no_control_route_exists(method: str, path: str) -> None:
    api = Api(SandboxConfig(keys=dict(KEYS)))
    assert api.request(method, path, token="anything").status_code == 404
    assert api.request(method, path, token=None).status_code == 404


@pytest.mark.parametrize(("method", "path"), CONTROL_ROUTES)
@pytest.mark.parametrize("token", [None, "wrong", TOKEN + "x", TOKEN[:-1], ""])
def test_a_missing_or_wrong_token_is_401_and_reveals_nothing(
    api: Api, method: str, path: str, token: str | None
) -> None:
    api.rows("/data/plans", plan())
    kwargs = {"json": {"outage": True}} if path == "/_sandbox/faults" and method == "POST" else {}
    response = api.request(method, path, token=token, **kwargs)
    assert response.status_code == 401
    assert response.json() == {"error": "Missing or wrong X-Sandbox-Token"}
    # Nothing happened either: faults unchanged, data and log kept.
    assert api.get("/_sandbox/faults").json()["outage"] is False
    assert [p["id"] for p in api.ledger()["plans"]] == ["plan_pro"]
    assert api.get("/_sandbox/requests").json()["count"] == 1


@pytest.mark.parametrize(("method", "path"), CONTROL_ROUTES)
def test_the_right_token_is_served(api: Api, method: str, path: str) -> None:
    kwargs = {"json": {}} if method == "POST" and path == "/_sandbox/faults" else {}
    assert api.request(method, path, **kwargs).status_code == 200


def test_inspect_without_a_token_is_refused() -> None:
    with pytest.raises(ValueError, match="inspect_token"):
        SandboxConfig(keys=dict(KEYS), inspect=True)
    runner = CliRunner(env={"SANDBOX_INSPECT_TOKEN": None, "SANDBOX_KEYS": None})
    result = runner.invoke(sandbox_command, ["--port", "0", "--key", "k=ds", "--inspect"])
    assert result.exit_code == 2
    assert result.output.strip() == "Error: --inspect needs --inspect-token TOKEN (or SANDBOX_INSPECT_TOKEN)"
    for bad in ("a b", "tök", ""):
        result = runner.invoke(sandbox_command, ["--port", "0", "--key", "k=ds", "--inspect-token", bad])
        assert result.exit_code == 2 and "--inspect-token" in result.output, bad
        with pytest.raises(ValueError, match="inspect_token"):
            SandboxConfig(keys=dict(KEYS), inspect_token=bad)


def test_no_key_anywhere_is_a_one_line_error() -> None:
    result = CliRunner(env={"SANDBOX_KEYS": ""}).invoke(sandbox_command, ["--port", "0"])
    assert result.exit_code == 2
    assert result.output.strip() == "Error: give at least one --key KEY=DATA_SOURCE_ID (or set SANDBOX_KEYS)"
    result = CliRunner(env={"SANDBOX_KEYS": "k1=ds1,broken"}).invoke(sandbox_command, ["--port", "0"])
    assert result.exit_code == 2 and "got 'broken'" in result.output


def test_keys_and_token_from_the_environment_stay_off_the_command_line(tmp_path: Path) -> None:
    env = {**child_env(), "SANDBOX_KEYS": "env_k1=ds_a, env_k2=ds_b", "SANDBOX_INSPECT_TOKEN": "env-token-123"}
    with open(tmp_path / "stderr", "wb") as stderr:
        child = subprocess.Popen(
            cli_command({}, "--inspect"), stdout=subprocess.PIPE, stderr=stderr, cwd=PROJECT_ROOT, env=env
        )
        try:
            url = read_line(child, 20).split()[-1]
            cmdline = Path(f"/proc/{child.pid}/cmdline").read_bytes()
            assert b"env_k1" not in cmdline and b"env-token-123" not in cmdline
            for key, ds in (("env_k1", "ds_a"), ("env_k2", "ds_b")):
                row = plan(data_source=ds)
                answer = httpx.post(url + "/data/plans", json=row, headers={"Authorization": f"Bearer {key}"})
                assert answer.json()["result"][0]["export_status"] == "inserted"
            assert httpx.get(url + "/_sandbox/ledger").status_code == 401
            ledger = httpx.get(url + "/_sandbox/ledger", headers={"X-Sandbox-Token": "env-token-123"}).json()
            assert sorted(ledger) == ["ds_a", "ds_b"]
        finally:
            child.terminate()
            child.communicate(timeout=10)


def test_sandbox_process_makes_a_random_token_and_keeps_it_off_argv(make_api: Callable[..., Api]) -> None:
    first, second = SandboxProcess({"k": "ds"}, "--inspect"), SandboxProcess({"k": "ds"}, "--inspect")
    assert len(first.inspect_token) >= 24 and first.inspect_token != second.inspect_token
    with first:
        assert first.process is not None
        assert first.inspect_token.encode() not in Path(f"/proc/{first.process.pid}/cmdline").read_bytes()
        assert httpx.get(first.url + "/_sandbox/requests").status_code == 401
        assert httpx.get(first.url + "/_sandbox/requests", headers=first.inspect_headers).status_code == 200
    assert os.environ.get("SANDBOX_INSPECT_TOKEN") != first.inspect_token
