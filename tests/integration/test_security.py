"""Security: the API key never leaves the process that posts, the source is only read, TLS is verified.

The key test runs a private deployment (its own Redis, state database, sandbox and worker, the worker
logging at DEBUG) so that everything in Redis and in the state database belongs to this test and can be
read whole: raw queue lists and `unacked` hashes peeked while batches wait (with their base64 bodies
decoded), the worker's log, every CLI output and every table. Retries, 429s and a 401 for a wrong key
make sure the error paths, where keys tend to leak, are exercised.
"""

from __future__ import annotations

import base64
import http.server
import inspect
import shutil
import ssl
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
import redis
from psycopg import sql

from backfill.api import GrowPanelClient, classify
from backfill.errors import FatalApiError, RetriableApiError
from backfill.settings import Settings
from sandbox.testing import SandboxProcess
from tests.integration.scenarios import CUSTOMERS, INVOICES, PLANS, invoice, ts
from tests.support.services import Database, RedisServer, wait_until
from tests.support.sources import build_source, mapping_file
from tests.support.stack import FAST, CliResult, SandboxView, Stack

# --- The key never appears in Redis, logs, CLI output or the state database -----------------------


@dataclass
class Deployment:
    """A private importer deployment and what it may know: the good key and a wrong one."""

    stack: Stack
    redis: RedisServer
    sandbox: SandboxView
    secret: str
    wrong: str
    outputs: list[CliResult] = field(default_factory=list)

    def cli(self, *args: str, **env: str) -> CliResult:
        """Run the CLI and keep its output for the final search."""
        result = self.stack.cli(*args, env=env or None)
        self.outputs.append(result)
        return result


@pytest.fixture
def deployment(source_db: Database, workdir: Path) -> Iterator[Deployment]:
    """Own Redis, own state database, own sandbox knowing only the good key, one worker at DEBUG."""
    secret = f"gpk_live_{uuid.uuid4().hex}"
    wrong = f"gpk_live_{uuid.uuid4().hex}"
    state = Database("security")
    server = RedisServer()
    server.start()
    sandbox_process = SandboxProcess({secret: "ds_secret"}, "--inspect", "--log-level", "warning")
    sandbox_process.start()
    env = {
        "DATABASE_URL": state.url,
        "SOURCE_DATABASE_URL": source_db.url,
        "CELERY_BROKER_URL": server.url(0),
        "GROWPANEL_API_URL": sandbox_process.url,
        # The worker holds the good key for one data source and a wrong one for another.
        "GROWPANEL_API_KEYS": f"ds_secret={secret},ds_wrong={wrong}",
        "BATCH_SIZE": "3",
        **FAST,
        "LOG_LEVEL": "DEBUG",
    }
    stack = Stack(env, sandbox_process.url, workdir)
    view = SandboxView(sandbox_process.url, secret, "ds_secret", sandbox_process.inspect_token)
    try:
        migrated = stack.cli("migrate")
        assert migrated.code == 0, migrated.stderr
        stack.start_worker(concurrency=4)
        yield Deployment(stack, server, view, secret, wrong)
    finally:
        stack.close()
        view.client.close()
        sandbox_process.stop()
        server.cleanup()
        state.drop()


def _redis_blobs(client: redis.Redis) -> dict[str, list[bytes]]:
    """Every key and value in Redis now, by the kind of key it was found in."""
    found: dict[str, list[bytes]] = {"queue": [], "unacked": [], "other": []}
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        values: list[bytes] = [key]
        if kind == b"string":
            values.append(client.get(key) or b"")
        elif kind == b"list":
            values += client.lrange(key, 0, -1)
        elif kind == b"hash":
            for name, value in client.hgetall(key).items():
                values += [name, value]
        elif kind == b"zset":
            values += client.zrange(key, 0, -1)
        elif kind == b"set":
            values += list(client.smembers(key))
        bucket = "unacked" if key == b"unacked" else "queue" if kind == b"list" and key.startswith(b"growpanel.") else "other"
        found[bucket] += values
    return found


def _decoded_bodies(blob: bytes) -> list[bytes]:
    """The base64 bodies of the Celery messages inside one Redis value (kombu encodes task bodies)."""
    try:
        data = orjson.loads(blob)
    except orjson.JSONDecodeError:
        return []
    out: list[bytes] = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("body"), str) and item.get("properties", {}).get("body_encoding") == "base64":
                out.append(base64.b64decode(item["body"]))
            stack += list(item.values())
        elif isinstance(item, list):
            stack += item
        elif isinstance(item, str) and item.startswith("{"):
            # kombu stores a message as JSON text inside the unacked entry's JSON array
            try:
                stack.append(orjson.loads(item))
            except orjson.JSONDecodeError:
                pass
    return out


class RedisWatch:
    """Peeks at the whole Redis of a deployment, keeping every blob seen."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.blobs: dict[str, list[bytes]] = {"queue": [], "unacked": [], "other": [], "body": []}

    def peek(self) -> None:
        """One full read of Redis."""
        for kind, values in _redis_blobs(self.client).items():
            self.blobs[kind] += values
            for value in values:
                self.blobs["body"] += _decoded_bodies(value)

    def task_messages(self, kind: str) -> int:
        """How many post_batch task messages were seen in queue lists or the unacked hash."""
        return sum(1 for blob in self.blobs[kind] if b"post_batch" in blob)


def _state_tables_text(stack: Stack) -> str:
    """Every row of every table of the state database, as Postgres prints it (bytea as hex)."""
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        assert {"runs", "batches", "batch_attempts", "audit", "run_stages"} <= set(tables)
        parts = []
        for table in tables:
            rows = conn.execute(sql.SQL("SELECT t::text FROM {} AS t").format(sql.Identifier(table))).fetchall()
            parts += [r[0] for r in rows]
    return "\n".join(parts)


def _forms(key: str) -> list[bytes]:
    """The key as text, as hex (bytea), and base64 at each alignment."""
    raw = key.encode()
    forms = [raw, raw.hex().encode()]
    for pad in range(3):
        encoded = base64.b64encode(b"x" * pad + raw)
        forms.append(encoded[4 * ((pad + 2) // 3):-4])
    return forms


def _leaks(haystack: bytes, keys: list[str]) -> list[str]:
    return [key for key in keys for form in _forms(key) if form in haystack]


def _source_rows() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The guide's scenarios plus enough customers and invoices for a few dozen small batches."""
    customers = list(CUSTOMERS) + [
        {"id": f"sec_c{n}", "name": f"Customer {n}", "created_date": ts("2023-01-01"), "country": "us"} for n in range(30)
    ]
    invoices = list(INVOICES) + [
        invoice(f"sec_i{n}-{k}", f"sec_c{n}", "one-time", f"2023-0{k + 1}-01", 100 * (k + 1)) for n in range(30) for k in range(3)
    ]
    return customers, invoices


def test_the_api_key_is_never_in_a_message_a_log_line_the_state_database_or_the_cli_output(
    deployment: Deployment, source_db: Database, source_schema: str, workdir: Path
) -> None:
    d = deployment
    customers, invoices = _source_rows()
    build_source(source_db.url, source_schema, PLANS, customers, invoices)
    mapping = mapping_file(workdir, source_schema)
    watch = RedisWatch(d.redis.client(0))
    good = {"GROWPANEL_DATA_SOURCE_ID": "ds_secret", "GROWPANEL_API_KEY": d.secret}

    # Given a slow API that is down at first, then throttles, then recovers
    d.sandbox.faults(latency_ms=250, outage=True)
    started = d.cli("start", "--mapping", mapping, **good)
    assert started.code == 0, started.stderr
    run_id = int(started.stdout.strip())

    def attempts_with(status: int) -> bool:
        watch.peek()
        rows = d.stack.sql(
            "SELECT count(*) AS n FROM batch_attempts a JOIN batches b ON b.id = a.batch_id "
            "WHERE b.run_id = :r AND a.http_status = :s",
            r=run_id,
            s=status,
        )
        return rows[0]["n"] > 0

    wait_until(lambda: attempts_with(503), 60, interval=0.02, message="a 503 during the outage")
    d.sandbox.faults(outage=False, throttle_rate=1.0, throttle_retry_after=0)
    wait_until(lambda: attempts_with(429), 60, interval=0.02, message="a 429 while throttled")
    d.sandbox.faults(throttle_rate=0)

    # When the run goes on, its batches are peeked at in Redis until it ends
    def finished() -> bool:
        watch.peek()
        return d.stack.status(run_id)["state"] in ("succeeded", "completed_with_errors")

    wait_until(finished, 180, interval=0.02, message=f"run {run_id} to finish")
    assert d.stack.status(run_id)["state"] == "succeeded"
    retried = d.stack.sql(
        "SELECT count(*) AS n FROM batches WHERE run_id = :r AND attempts > 1", r=run_id
    )[0]["n"]
    assert retried > 0

    # And a run of a data source whose key the API refuses pauses on its 401
    wrong = {"GROWPANEL_DATA_SOURCE_ID": "ds_wrong", "GROWPANEL_API_KEY": d.wrong}
    started = d.cli("start", "--mapping", mapping, **wrong)
    assert started.code == 0, started.stderr
    wrong_run = int(started.stdout.strip())

    def paused() -> bool:
        watch.peek()
        return d.stack.status(wrong_run)["state"] == "paused"

    wait_until(paused, 60, interval=0.02, message=f"run {wrong_run} to pause on the 401")
    assert d.stack.status(wrong_run)["paused_reason"].startswith("HTTP 401: Unknown API key")
    # and the CLI's own calls with a wrong key fail with a message, not the key.
    reset = d.cli("start", "--mapping", mapping, "--reset-data-source", "--yes", GROWPANEL_DATA_SOURCE_ID="ds_other", GROWPANEL_API_KEY=d.wrong)
    assert reset.code == 2
    assert "the reset of data source ds_other failed: HTTP 401" in reset.stderr
    for run in (run_id, wrong_run):
        d.cli("status", str(run), "--json")
        d.cli("errors", str(run), "--json")
        d.cli("errors", str(run), "--csv")
    d.cli("runs")
    watch.peek()

    # Then the peek did see task messages, in the queues and in the unacked hash, and read their bodies
    assert watch.task_messages("queue") > 0
    assert watch.task_messages("unacked") > 0
    assert any(b"invoices" in body for body in watch.blobs["body"])
    # and no key is anywhere: Redis, decoded bodies, the worker's log, CLI output, any state table.
    keys = [d.secret, d.wrong]
    for kind, blobs in watch.blobs.items():
        assert _leaks(b"\n".join(blobs), keys) == [], f"a key is in Redis ({kind})"
    log = d.stack.logs()
    assert "post_batch" in log and "HTTP 401" in log  # the log did record the retries and the refusal
    assert _leaks(log.encode(), keys) == [], "a key is in the worker's log"
    for result in d.outputs:
        assert _leaks((result.stdout + result.stderr).encode(), keys) == [], f"a key is in CLI output: {result}"
    state_text = _state_tables_text(d.stack)
    assert "Unknown API key" in state_text and "HTTP 503" in state_text  # errors were recorded there
    assert _leaks(state_text.encode(), keys) == [], "a key is in the state database"


# --- The source is only ever read -------------------------------------------------------------------


def test_the_producer_reads_the_source_inside_a_read_only_transaction(
    stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path
) -> None:
    # Given plans whose name is the read-only setting of the transaction that reads them
    build_source(source_db.url, source_schema, PLANS, CUSTOMERS, INVOICES)
    plans = (
        f"SELECT id, current_setting('transaction_read_only') || ' ' || current_setting('TimeZone') AS name, "
        f"billing_freq, billing_freq_count, currency FROM {source_schema}.plans"
    )
    result = stack.cli("start", "--mapping", mapping_file(workdir, source_schema, plans=plans), "--wait", "--json")
    assert result.code == 0, result.stderr
    # Then GrowPanel holds the answer the producer's session gave: read only, in UTC
    names = {p["name"] for p in sandbox.ledger()["plans"]}
    assert names == {"on UTC"}


def test_a_mapping_that_writes_through_a_function_pauses_the_run_and_writes_nothing(
    stack: Stack, sandbox: SandboxView, source_db: Database, source_schema: str, workdir: Path
) -> None:
    # Given a customers query calling a function that writes (the check reads no row, so `start` accepts it)
    build_source(source_db.url, source_schema, PLANS, CUSTOMERS, INVOICES)
    with psycopg.connect(source_db.url, autocommit=True) as conn:
        s = sql.Identifier(source_schema)
        conn.execute(sql.SQL("CREATE TABLE {}.log (n int)").format(s))
        conn.execute(
            sql.SQL("CREATE FUNCTION {}.audit_read(cid text) RETURNS text LANGUAGE plpgsql VOLATILE AS "
                    "$$ BEGIN INSERT INTO {}.log VALUES (1); UPDATE {}.customers SET name = 'pwned'; RETURN cid; END $$").format(s, s, s)
        )
        before = conn.execute(sql.SQL("SELECT id, name FROM {}.customers ORDER BY id").format(s)).fetchall()
    customers = (
        f"SELECT {source_schema}.audit_read(id) AS id, name, email, created_date, country, state, trial_started, "
        f"custom_variables FROM {source_schema}.customers"
    )
    run_id = stack.start_run("--mapping", mapping_file(workdir, source_schema, customers=customers))
    # When the producer reads the customers
    doc = stack.wait_for_state(run_id, ("paused",))
    # Then the run pauses with a clear read-only message, no customer sent
    assert doc["paused_reason"] == (
        "reading customers from the source failed: the query tries to write to the source, which is read only "
        "(cannot execute INSERT in a read-only transaction)"
    )
    assert sandbox.ledger()["customers"] == []
    # and the source is unchanged.
    with psycopg.connect(source_db.url) as conn:
        s = sql.Identifier(source_schema)
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}.log").format(s)).fetchone() == (0,)
        assert conn.execute(sql.SQL("SELECT id, name FROM {}.customers ORDER BY id").format(s)).fetchall() == before
    cancelled = stack.cli("cancel", str(run_id))
    assert cancelled.code == 0, cancelled.stderr


@pytest.mark.parametrize("dry_run", [False, True], ids=["start", "dry-run"])
def test_a_mapping_with_several_statements_is_refused_and_changes_nothing(
    stack: Stack, source_db: Database, source_schema: str, workdir: Path, dry_run: bool
) -> None:
    # Given a plans query that commits the read-only transaction and creates a table after it
    build_source(source_db.url, source_schema, PLANS, CUSTOMERS, INVOICES)
    s = source_schema
    with psycopg.connect(source_db.url) as conn:
        before = conn.execute(sql.SQL("SELECT * FROM {}.plans ORDER BY id").format(sql.Identifier(s))).fetchall()
    for n, plans in enumerate([
        f"SELECT * FROM {s}.plans; COMMIT; CREATE TABLE {s}.evil (); SELECT 1",
        f"SELECT * FROM {s}.plans) AS q; COMMIT; CREATE TABLE {s}.evil (); SELECT * FROM (SELECT 1",
        f"SELECT * FROM {s}.plans; COMMIT; DELETE FROM {s}.plans; -- and a comment",
    ]):
        mapping = mapping_file(workdir, s, name=f"multi-{dry_run}-{n}.toml", plans=plans)
        result = stack.cli("start", "--mapping", mapping, *(["--dry-run"] if dry_run else []))
        # Then `start` refuses it in one line naming the entity (exit 3),
        assert result.code == 3, result.stderr
        assert result.stderr.startswith("growpanel-backfill: plans query holds more than one SQL statement"), result.stderr
        assert result.stderr.count("\n") == 1
        # and nothing of it ran: no table, the plans untouched.
        with psycopg.connect(source_db.url) as conn:
            assert conn.execute("SELECT to_regclass(%s)", (f"{s}.evil",)).fetchone() == (None,)
            assert conn.execute(sql.SQL("SELECT * FROM {}.plans ORDER BY id").format(sql.Identifier(s))).fetchall() == before


def _role_url(url: str, role: str) -> str:
    parsed = httpx.URL(url)
    return str(parsed.copy_with(username=role, password=None))


def test_start_warns_in_one_line_when_the_source_role_could_write(
    stack: Stack, source_db: Database, source_schema: str, workdir: Path
) -> None:
    build_source(source_db.url, source_schema, PLANS, CUSTOMERS, INVOICES)
    s = sql.Identifier(source_schema)
    writer, reader = f"gp_writer_{uuid.uuid4().hex[:8]}", f"gp_reader_{uuid.uuid4().hex[:8]}"
    mapping = mapping_file(workdir, source_schema)
    with psycopg.connect(source_db.url, autocommit=True) as conn:
        for role in (writer, reader):
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(s, sql.Identifier(role)))
            conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(s, sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT INSERT ON {}.customers TO {}").format(s, sql.Identifier(writer)))
        # The README's recommended role: SELECT only, and read only by default.
        conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(sql.Identifier(reader)))
    try:
        # A superuser (the tests' own role) gets one line of warning, and the dry run still goes on;
        result = stack.cli("start", "--dry-run", "--mapping", mapping)
        assert result.code in (0, 1), result.stderr
        warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
        assert len(warnings) == 1 and "is a superuser" in warnings[0], result.stderr
        # a role that may insert into a table the mapping reads is named with that table;
        result = stack.cli("start", "--dry-run", "--mapping", mapping, env={"SOURCE_DATABASE_URL": _role_url(source_db.url, writer)})
        assert result.code in (0, 1), result.stderr
        warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
        assert warnings == [
            f"warning: the source role {writer} can write to {source_schema}.customers, which the mapping reads: "
            "give the importer a SELECT-only role (README, Security)"
        ], result.stderr
        # the recommended SELECT-only role gets none.
        result = stack.cli("start", "--dry-run", "--mapping", mapping, env={"SOURCE_DATABASE_URL": _role_url(source_db.url, reader)})
        assert result.code in (0, 1), result.stderr
        assert "warning:" not in result.stderr
    finally:
        with psycopg.connect(source_db.url, autocommit=True) as conn:
            for role in (writer, reader):
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


# --- TLS verification is always on, and there is no switch for it ---------------------------------


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers 200 and remembers the requests (and their Authorization headers) it got."""

    seen: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's naming
        _Recorder.seen.append(self.headers.get("Authorization", ""))
        body = b'{"result": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        pass


@pytest.fixture
def self_signed_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTPS server on 127.0.0.1 with a self-signed certificate: (base URL, its certificate)."""
    openssl = shutil.which("openssl")
    assert openssl, "the TLS test needs the openssl command to make a self-signed certificate"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Recorder.seen = []
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert
    finally:
        server.shutdown()
        server.server_close()


def test_the_client_verifies_tls_and_never_sends_the_key_to_an_unverified_server(self_signed_server: tuple[str, Path]) -> None:
    url, cert = self_signed_server
    secret = f"gpk_live_{uuid.uuid4().hex}"
    # Given a server that works for a client that trusts its certificate
    assert httpx.post(f"{url}/data/plans", content=b"[]", verify=ssl.create_default_context(cafile=str(cert))).status_code == 200
    assert _Recorder.seen == [""]
    # When our client posts to it
    client = GrowPanelClient(url, timeout=5, connect_timeout=5)
    try:
        exchange = client.post_rows("plans", b"[]", secret)
    finally:
        client.close()
    # Then the handshake fails on the certificate, nothing reached the server, and the error names why
    assert exchange.status is None
    assert exchange.error is not None and "CERTIFICATE_VERIFY_FAILED" in exchange.error
    assert _Recorder.seen == [""]
    with pytest.raises(RetriableApiError) as caught:
        classify(exchange, secret)
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value) and secret not in str(caught.value)


def test_there_is_no_setting_or_argument_that_turns_tls_verification_off() -> None:
    parameters = set(inspect.signature(GrowPanelClient.__init__).parameters)
    assert parameters == {"self", "base_url", "timeout", "connect_timeout", "max_connections", "transport", "max_response_bytes", "max_retry_after"}
    words = ("verify", "ssl", "tls", "insecure", "cert")
    assert [name for name in Settings.model_fields if any(w in name for w in words)] == []
    # The pool the client builds verifies certificates and host names.
    client = GrowPanelClient("https://api.growpanel.io")
    try:
        context = client._client._transport._pool._ssl_context  # type: ignore[attr-defined]
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname is True
    finally:
        client.close()


def test_a_redirect_is_not_followed_so_the_key_cannot_be_sent_elsewhere() -> None:
    # Given an API URL that redirects to another server
    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{other.server_address[1]}/data/plans")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    first = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    for server in (other, first):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    _Recorder.seen = []
    secret = f"gpk_live_{uuid.uuid4().hex}"
    client = GrowPanelClient(f"http://127.0.0.1:{first.server_address[1]}", timeout=5, connect_timeout=5)
    try:
        exchange = client.post_rows("plans", b"[]", secret)
    finally:
        client.close()
        for server in (other, first):
            server.shutdown()
            server.server_close()
    # Then the redirect is an error for the operator, and the other server never saw the key
    assert exchange.status == 307
    assert _Recorder.seen == []
    with pytest.raises(FatalApiError) as caught:
        classify(exchange, secret)
    assert "redirect to http://127.0.0.1:" in str(caught.value)


def test_a_key_echoed_by_the_server_is_redacted_from_what_we_keep() -> None:
    # A hostile or buggy server that repeats the Authorization header in its error body
    secret = f"gpk_live_{uuid.uuid4().hex}"

    def echo(request: httpx.Request) -> httpx.Response:
        header = request.headers["Authorization"]
        return httpx.Response(401, json={"error": f"bad key {header}"})

    client = GrowPanelClient("https://api.growpanel.io", transport=httpx.MockTransport(echo))
    try:
        exchange = client.post_rows("plans", b"[]", secret)
    finally:
        client.close()
    assert secret.encode() in exchange.content
    with pytest.raises(FatalApiError) as caught:
        classify(exchange, secret)
    assert str(caught.value) == "HTTP 401: bad key Bearer [redacted]"
