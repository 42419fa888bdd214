"""A sandbox PSP's own storage: one SQLite file per sandbox in its data dir.

It stands for the PSP's database, so it survives restarts and lets status inquiries,
webhooks and settlement reports tell the truth. One connection guarded by a lock: the
sandbox is a test double, simplicity beats throughput. WAL lets the
`sandbox_settlement_report` command read the file while the server runs.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import string
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS payments (
    id TEXT PRIMARY KEY,
    reference TEXT NOT NULL UNIQUE,
    request_hash TEXT NOT NULL,
    method TEXT NOT NULL,
    card_number TEXT,
    card_last4 TEXT,
    exp_month INTEGER,
    exp_year INTEGER,
    iban TEXT,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    state TEXT NOT NULL,
    decline TEXT,
    capture INTEGER NOT NULL DEFAULT 0,
    off_session INTEGER NOT NULL DEFAULT 0,
    network_transaction_id TEXT,
    token TEXT,
    store_method INTEGER NOT NULL DEFAULT 0,
    return_url TEXT,
    action_token TEXT UNIQUE,
    amount_captured INTEGER NOT NULL DEFAULT 0,
    amount_refunded INTEGER NOT NULL DEFAULT 0,
    metadata TEXT NOT NULL DEFAULT '{}',
    description TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS operations (
    id TEXT PRIMARY KEY,
    payment_id TEXT NOT NULL REFERENCES payments(id),
    kind TEXT NOT NULL,
    reference TEXT NOT NULL,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    state TEXT NOT NULL,
    fee INTEGER NOT NULL DEFAULT 0,
    decline TEXT,
    created_at REAL NOT NULL,
    completed_at REAL,
    returned_at REAL,
    UNIQUE (payment_id, kind, reference)
);
CREATE TABLE IF NOT EXISTS disputes (
    id TEXT PRIMARY KEY,
    payment_id TEXT NOT NULL REFERENCES payments(id),
    reason TEXT NOT NULL,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    fee INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    closed_at REAL,
    evidence_due_by REAL
);
CREATE TABLE IF NOT EXISTS dispute_evidence (
    id TEXT PRIMARY KEY,
    dispute_id TEXT NOT NULL UNIQUE REFERENCES disputes(id),
    reference TEXT NOT NULL,
    text TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    token TEXT PRIMARY KEY,
    card_number TEXT NOT NULL,
    exp_month INTEGER NOT NULL,
    exp_year INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    payment_id TEXT,
    body BLOB NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    delivered_at REAL,
    given_up INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    run_at REAL NOT NULL,
    done INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (done, run_at);
CREATE INDEX IF NOT EXISTS events_due ON events (delivered_at, given_up, next_attempt_at);
"""

_ALPHABET = string.digits + string.ascii_uppercase


def new_id(prefix: str, length: int = 16) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def db_path(data_dir: str | Path, psp: str) -> Path:
    return Path(data_dir) / f"{psp}.sqlite3"


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(SCHEMA)
        self._upgrade()
        self._lock = threading.RLock()

    def _upgrade(self) -> None:
        """Columns added since a sandbox's file was made (its state survives upgrades)."""
        have = {r["name"] for r in self._conn.execute("PRAGMA table_info(disputes)")}
        if "closed_at" not in have:  # when the network decided (won disputes: the report's reversal)
            self._conn.execute("ALTER TABLE disputes ADD COLUMN closed_at REAL")
        if "evidence_due_by" not in have:  # the last moment the merchant's evidence is taken
            self._conn.execute("ALTER TABLE disputes ADD COLUMN evidence_due_by REAL")
        have = {r["name"] for r in self._conn.execute("PRAGMA table_info(operations)")}
        if "returned_at" not in have:  # a refund sent back after it succeeded (the report's reversal)
            self._conn.execute("ALTER TABLE operations ADD COLUMN returned_at REAL")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (re-entrant: a nested call joins the outer one)."""
        with self._lock:
            if self._conn.in_transaction:
                yield self._conn
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute(sql, params).fetchone()
        return dict(row) if row else None

    def all(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._conn.execute(sql, params).fetchall()]

    def insert(self, table: str, values: dict[str, Any]) -> None:
        cols = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        with self.tx() as c:
            c.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", tuple(values.values()))  # noqa: S608

    def update(self, table: str, key: str, values: dict[str, Any]) -> None:
        sets = ", ".join(f"{k} = ?" for k in values)
        with self.tx() as c:
            c.execute(f"UPDATE {table} SET {sets} WHERE id = ?", (*values.values(), key))  # noqa: S608

    # jobs: delayed work that survives restarts (webhook outcomes, disputes, returns)
    def job_add(self, kind: str, payload: dict[str, Any], delay: float = 0.0) -> None:
        self.insert("jobs", {"kind": kind, "payload": json.dumps(payload), "run_at": time.time() + delay})

    def job_next(self) -> tuple[int, str, dict[str, Any]] | None:
        """The next due job. One worker thread runs jobs; a job is marked done only after it ran,
        so a crash re-runs it on restart (jobs are written to be safe to run twice)."""
        row = self.one(
            "SELECT id, kind, payload FROM jobs WHERE done = 0 AND run_at <= ? ORDER BY run_at, id LIMIT 1",
            (time.time(),),
        )
        if row is None:
            return None
        return row["id"], row["kind"], json.loads(row["payload"])

    def job_done(self, job_id: int) -> None:
        with self.tx() as c:
            c.execute("UPDATE jobs SET done = 1 WHERE id = ?", (job_id,))
