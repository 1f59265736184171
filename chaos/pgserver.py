"""PostgreSQL for a chaos run: a schema of its own on a shared server, and restarts of the server itself."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def server_url() -> str:
    return os.environ.get("FULFIL_TEST_PG_URL") or DEFAULT_URL


def create_schema(url: str) -> tuple[str, str]:
    """A new schema `chaos_<pid>_<hex>`; (its name, a URL whose connections use it)."""
    schema = f"chaos_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    finally:
        engine.dispose()
    scoped = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    return schema, scoped.render_as_string(hide_password=False)


def drop_schema(url: str, schema: str) -> None:
    wait_ready(url, timeout=60.0)
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '10s'"))
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        engine.dispose()


def accepts_connections(url: str) -> bool:
    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except SQLAlchemyError:
        return False
    finally:
        engine.dispose()


def wait_ready(url: str, timeout: float = 120.0) -> float:
    """Wait until the server answers; the seconds waited. Raises TimeoutError."""
    started = time.monotonic()
    while not accepts_connections(url):
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"PostgreSQL does not accept connections after {timeout:.0f}s")
        time.sleep(0.3)
    return time.monotonic() - started


def restart(url: str, timeout: float = 120.0) -> float:
    """Restart the local cluster (`pg_ctlcluster --skip-systemctl-redirect VERSION main restart`: every
    connection is cut) and wait until it accepts connections; the seconds it took."""
    versions = sorted(p.name for p in Path("/etc/postgresql").iterdir()) if Path("/etc/postgresql").is_dir() else []
    if not versions:
        raise RuntimeError("no PostgreSQL cluster under /etc/postgresql to restart")
    started = time.monotonic()
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "restart"],
        check=True, capture_output=True, timeout=timeout,
    )
    wait_ready(url, timeout)
    return time.monotonic() - started
