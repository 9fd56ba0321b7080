"""Face templates in the embedded ledger's SQLite file (the tables and the three operations).

``face_templates`` holds each enrolled account's templates (float32 bytes, never a photo);
``face_events`` is the append-only record of every enrolment (with its consent) and deletion,
and its ``seq`` is the cursor terminals sync by. :class:`terminal.backend.ledger.EmbeddedLedger`
calls these functions inside its own write transactions.
"""

from __future__ import annotations

import logging
import sqlite3
import time

import numpy as np
import numpy.typing as npt

from terminal.backend.face_sync import (
    MAX_TEMPLATES,
    FaceAccountRecord,
    FaceConsent,
    FaceEnrolmentError,
    FaceEnrolmentReceipt,
    FaceTemplateChanges,
)

logger = logging.getLogger(__name__)

FACE_SCHEMA = """
CREATE TABLE IF NOT EXISTS face_templates (
    account_id  TEXT NOT NULL REFERENCES accounts(account_id),
    position    INTEGER NOT NULL,
    model       TEXT NOT NULL,
    template    BLOB NOT NULL,
    enrolled_at REAL NOT NULL,
    PRIMARY KEY (account_id, position)
);
CREATE TABLE IF NOT EXISTS face_events (
    seq                  INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id           TEXT NOT NULL,
    event                TEXT NOT NULL CHECK (event IN ('enrolled', 'deleted')),
    actor                TEXT NOT NULL,
    template_count       INTEGER NOT NULL,
    consent_given_by     TEXT,
    consent_text_version TEXT,
    consent_given_at     REAL,
    reason               TEXT,
    at                   REAL NOT NULL
);
"""


def check_templates(templates: npt.NDArray[np.float32], model: str) -> npt.NDArray[np.float32]:
    """The templates as a float32 matrix, or FaceEnrolmentError naming what is wrong."""
    if not model.strip():
        raise FaceEnrolmentError("model: the embedding model must be named")
    matrix = np.asarray(templates, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise FaceEnrolmentError("templates: at least one template is needed")
    if matrix.shape[0] > MAX_TEMPLATES:
        raise FaceEnrolmentError(f"templates: at most {MAX_TEMPLATES} per account")
    if not np.isfinite(matrix).all():
        raise FaceEnrolmentError("templates: NaN or infinity")
    return matrix


def enrol(
    db: sqlite3.Connection,
    account_id: str,
    templates: npt.NDArray[np.float32],
    model: str,
    consent: FaceConsent,
    *,
    card_id: str | None,
    actor: str,
) -> FaceEnrolmentReceipt:
    """Replace the account's templates and record the enrolment with its consent."""
    try:
        consent.check()
    except FaceEnrolmentError:
        raise
    matrix = check_templates(templates, model)
    if db.execute("SELECT 1 FROM accounts WHERE account_id = ?", (account_id,)).fetchone() is None:
        raise FaceEnrolmentError(f"no account {account_id!r}")
    if card_id is not None:
        owner = db.execute("SELECT account_id FROM cards WHERE card_id = ?", (card_id,)).fetchone()
        if owner is None or owner[0] != account_id:
            raise FaceEnrolmentError(f"card does not belong to account {account_id!r}")
    now = time.time()
    db.execute("DELETE FROM face_templates WHERE account_id = ?", (account_id,))
    db.executemany(
        "INSERT INTO face_templates (account_id, position, model, template, enrolled_at) "
        "VALUES (?, ?, ?, ?, ?)",
        [(account_id, i, model, row.astype("<f4").tobytes(), now) for i, row in enumerate(matrix)],
    )
    cursor = db.execute(
        "INSERT INTO face_events (account_id, event, actor, template_count, consent_given_by, "
        "consent_text_version, consent_given_at, at) VALUES (?, 'enrolled', ?, ?, ?, ?, ?, ?)",
        (
            account_id,
            actor,
            len(matrix),
            consent.given_by,
            consent.text_version,
            consent.given_at,
            now,
        ),
    )
    return FaceEnrolmentReceipt(account_id, len(matrix), model, now, int(cursor.lastrowid or 0))


def delete(
    db: sqlite3.Connection, account_id: str, *, card_id: str | None, reason: str, actor: str
) -> int:
    """Delete every template of the account; the deletion is recorded even when there were none."""
    if card_id is not None:
        owner = db.execute("SELECT account_id FROM cards WHERE card_id = ?", (card_id,)).fetchone()
        if owner is None or owner[0] != account_id:
            raise FaceEnrolmentError(f"card does not belong to account {account_id!r}")
    count = db.execute("DELETE FROM face_templates WHERE account_id = ?", (account_id,)).rowcount
    db.execute(
        "INSERT INTO face_events (account_id, event, actor, template_count, reason, at) "
        "VALUES (?, 'deleted', ?, ?, ?, ?)",
        (account_id, actor, count, reason, time.time()),
    )
    return int(count)


def changes_since(db: sqlite3.Connection, since: int) -> FaceTemplateChanges:
    """Every account whose templates changed after ``since``, with its templates now."""
    cursor = int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM face_events").fetchone()[0])
    changed = [
        str(row[0])
        for row in db.execute(
            "SELECT DISTINCT account_id FROM face_events WHERE seq > ? ORDER BY account_id",
            (since,),
        )
    ]
    accounts: list[FaceAccountRecord] = []
    deleted: list[str] = []
    for account_id in changed:
        rows = db.execute(
            "SELECT t.model, t.template, a.display_name, a.blocked FROM face_templates t "
            "JOIN accounts a ON a.account_id = t.account_id WHERE t.account_id = ? "
            "ORDER BY t.position",
            (account_id,),
        ).fetchall()
        if not rows:
            deleted.append(account_id)
            continue
        templates = np.stack(
            [np.frombuffer(row[1], dtype="<f4").astype(np.float32) for row in rows]
        )
        accounts.append(
            FaceAccountRecord(
                account_id, str(rows[0][2]), str(rows[0][0]), templates, bool(rows[0][3])
            )
        )
    return FaceTemplateChanges(cursor, accounts, deleted)
