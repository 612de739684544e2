"""The `sandbox` command: start-up line, flags, bad keys, clean stop on signals."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sandbox_helpers import plan

from sandbox.cli import sandbox_command
from sandbox.testing import PROJECT_ROOT, SandboxProcess, child_env, cli_command, read_line


def test_cli_starts_prints_its_address_and_stops_cleanly_on_sigterm() -> None:
    process = SandboxProcess({"k": "ds_9"}, "--max-batch", "2", "--outage", "--fault-path", "/data/invoices")
    with process:
        assert process.url.startswith("http://127.0.0.1:")
        port = int(process.url.rsplit(":", 1)[1])
        assert port not in (0, 8080)
        headers = {"Authorization": "Bearer k"}
        ok = httpx.post(process.url + "/data/plans", json=plan(data_source="ds_9"), headers=headers)
        assert ok.json() == {"result": [{"id": "plan_pro", "export_status": "inserted"}]}
        # Flags reached the config: max batch 2, outage limited to invoices, no inspection.
        too_big = httpx.post(process.url + "/data/plans", json=[plan()] * 3, headers=headers)
        assert too_big.status_code == 413
        assert httpx.post(process.url + "/data/invoices", json=[], headers=headers).status_code == 503
        assert httpx.get(process.url + "/_sandbox/ledger").status_code == 404
        assert process.stop() == 0
    # Logs went to stderr; stdout held only the address line (read by SandboxProcess).
    assert "Uvicorn running" in process.stderr() or "Started server" in process.stderr()


def test_sigint_stops_it_cleanly_too() -> None:
    process = SandboxProcess({"k": "ds_9"})
    with process:
        assert process.process is not None
        process.process.send_signal(signal.SIGINT)
        assert process.process.wait(10) == 0
        assert "Traceback" not in process.stderr()


def test_stdout_is_exactly_one_line_and_logs_go_to_stderr(tmp_path: Path) -> None:
    with open(tmp_path / "stderr", "wb") as stderr:
        child = subprocess.Popen(
            cli_command({"k": "ds_9"}, "--access-log"),
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=PROJECT_ROOT,
            env=child_env(),
        )
        try:
            line = read_line(child, 20)
            assert line.startswith("sandbox listening on http://127.0.0.1:") and line.endswith("\n")
            url = line.split()[-1]
            httpx.get(url + "/data/plans", headers={"Authorization": "Bearer k"})
        finally:
            child.send_signal(signal.SIGTERM)
            rest, _ = child.communicate(timeout=10)
    assert child.returncode == 0
    assert rest == b""
    logged = (tmp_path / "stderr").read_text()
    assert "GET /data/plans" in logged and "Shutting down" in logged


@pytest.mark.parametrize("bad", ["foo", "=ds_1", "key=", "key = ds", "a b=ds"])
def test_bad_key_is_a_one_line_error(bad: str) -> None:
    result = CliRunner().invoke(sandbox_command, ["--port", "0", "--key", bad])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: --key must look like KEY=DATA_SOURCE_ID")


def test_bad_key_from_a_real_process() -> None:
    done = subprocess.run(
        cli_command({}, "--key", "nokey"),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=PROJECT_ROOT,
        env=child_env(),
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == ["Error: --key must look like KEY=DATA_SOURCE_ID, got 'nokey'"]


def test_a_key_is_required() -> None:
    result = CliRunner(env={"SANDBOX_KEYS": None}).invoke(sandbox_command, ["--port", "0"])
    assert result.exit_code == 2 and "--key" in result.output


def test_help_lists_the_flags() -> None:
    result = CliRunner().invoke(sandbox_command, ["--help"])
    assert result.exit_code == 0
    for flag in (
        "--host",
        "--port",
        "--key",
        "--max-batch",
        "--rate-limit",
        "--inspect",
        "--progress-delay",
        "--store",
        "--latency-ms",
        "--error-rate",
        "--lost-mode",
        "--hang-seconds",
        "--outage",
        "--throttle-retry-after",
        "--fault-path",
        "--seed",
        "--inspect-token",
        "SANDBOX_INSPECT_TOKEN",
        "SANDBOX_KEYS",
        "--wire",
        "--mrr-unit",
        "--listing-offset",
    ):
        assert flag in result.output


def test_python_dash_m_sandbox_is_the_same_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=PROJECT_ROOT,
        env=child_env(),
    )
    assert done.returncode == 0 and "--key KEY=DATA_SOURCE_ID" in done.stdout


def test_wire_flags_reach_the_running_sandbox() -> None:
    flags = ("--wire", "legacy", "--mrr-unit", "units", "--listing-offset", "ignore")
    with SandboxProcess({"k": "ds_9"}, *flags) as process:
        settings = httpx.get(process.url + "/_sandbox/faults", headers=process.inspect_headers).json()
        assert (settings["wire"], settings["mrr_unit"], settings["listing_offset"]) == ("legacy", "units", "ignore")
        progress = httpx.get(process.url + "/data/data-sources/ds_9/progress", headers={"Authorization": "Bearer k"})
        assert progress.json()["enqueued_count"] == 0
        # Back to the SDK's shape at run time, without a restart.
        httpx.post(process.url + "/_sandbox/faults", json={"wire": "sdk"}, headers=process.inspect_headers)
        progress = httpx.get(process.url + "/data/data-sources/ds_9/progress", headers={"Authorization": "Bearer k"})
        assert progress.json()["enqueuedCount"] == 0 and "enqueued_count" not in progress.json()
