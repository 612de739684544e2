"""The read-only source role of docker-compose (examples/compose-source-reader.sql), run by psql as the
postgres image runs it, against the real PostgreSQL: the role reads, and cannot write or create."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from tests.support.services import ADMIN_URL, PROJECT_ROOT, Database


@pytest.fixture
def reader_role() -> Iterator[tuple[Database, str]]:
    """A billing database with a table, then the compose init script run on it (role and database renamed)."""
    db = Database("billing")
    role = f"gpbt_reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.before_init (id text PRIMARY KEY)")
        conn.execute("INSERT INTO public.before_init VALUES ('a')")
    script = (PROJECT_ROOT / "examples" / "compose-source-reader.sql").read_text()
    script = script.replace("growpanel_reader", role).replace("\\connect billing", f"\\connect {db.name}")
    script = script.replace("DATABASE billing", f"DATABASE {db.name}")
    psql = shutil.which("psql")
    assert psql is not None, "psql is needed to run the init script as the postgres image does"
    done = subprocess.run(
        [psql, "-v", "ON_ERROR_STOP=1", "-X", "-q", ADMIN_URL], input=script, text=True, capture_output=True,
        env={**os.environ, "SOURCE_READER_PASSWORD": "s3cret"}, timeout=60, check=False,
    )
    try:
        assert done.returncode == 0, done.stderr
        yield db, role
    finally:
        db.drop()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_the_compose_source_role_reads_and_cannot_write(reader_role: tuple[Database, str]) -> None:
    db, role = reader_role
    # Given a table created by the owner after the init script ran
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.after_init (id text)")
        conn.execute("INSERT INTO public.after_init VALUES ('b')")
    with psycopg.connect(db.url, user=role, password="s3cret", autocommit=True) as conn:
        # Then it reads both tables, its sessions are read-only, and it is no superuser
        assert conn.execute("SELECT id FROM public.before_init").fetchall() == [("a",)]
        assert conn.execute("SELECT id FROM public.after_init").fetchall() == [("b",)]
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (False,)
        # and nothing writes: neither in its default read-only transactions
        for statement in ("INSERT INTO public.before_init VALUES ('x')", "CREATE TABLE public.x (id int)", "CREATE TEMP TABLE t (id int)"):
            with pytest.raises(psycopg.Error) as refused:
                conn.execute(statement)
            assert refused.value.sqlstate == "25006", statement  # read_only_sql_transaction
        # nor in a transaction that asks for READ WRITE: the grants stop it there
        for statement in ("INSERT INTO public.before_init VALUES ('x')", "DELETE FROM public.after_init", "CREATE TABLE public.x (id int)", "CREATE TEMP TABLE t (id int)"):
            with pytest.raises(psycopg.Error) as refused:
                with conn.transaction():
                    conn.execute("SET TRANSACTION READ WRITE")
                    conn.execute(statement)
            assert refused.value.sqlstate == "42501", statement  # insufficient_privilege
    with psycopg.connect(db.url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM public.before_init").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM public.after_init").fetchone() == (1,)
