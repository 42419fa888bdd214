"""Import and match a PSP settlement report (docs/reconciliation.md).

1. The PSP's adapter parses its own format into normalized rows (a file it cannot read at all is
   refused whole, before anything is written; an unreadable line is reported with its number).
2. The run is recorded (unique per PSP and file hash: the same file again changes nothing) and
   the rows are bulk loaded into `StatementLine`, the staging table: PostgreSQL `COPY` through
   psycopg 3, a plain bulk insert on SQLite; in chunks, so the run page shows progress.
3. Matching is set-based: one UPDATE joins the lines to captures, refunds and disputes (read
   only) and sets each line's outcome; no Python loop per row.
4. Auto-heal: the attempts behind "missing in Payera" lines, or the disputes their chargeback and
   chargeback reversal lines name, are inquired at the PSP through the payments recovery service
   (a lost webhook is the usual cause), and those lines are matched again.
5. The matched lines post the settlement through `ledger.services`: per currency and payout
   batch, bank cash (net) and PSP fee expense (gross - net: what the PSP kept) against the PSP
   receivable (gross), with the business reference `psp_settlement:<run>:<currency>:<batch>`
   (posting twice posts once).
6. What stays unexplained becomes a `Discrepancy` (one INSERT ... SELECT), plus one per capture,
   refund or won dispute's reversal at that PSP inside the report's period that the report lacks
   (missing at PSP). 5 and 6 are one transaction with the run marked done.
Any failure after the run is recorded fails it: its lines and discrepancies removed, status
`failed` with the error; the same file again imports it anew (docs/decisions/reconciliation-import-failure.md).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.db import DataError, IntegrityError, OperationalError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from ledger import services as ledger_services
from ledger.types import Accounts, JournalKind, PostingLine
from payera.core.db import outside_transaction
from payera.core.masking import data_has_card_number, has_card_number, mask_pans, mask_text
from payera.core.money import currency_exponent
from payments import selectors as payments_selectors
from payments.services import attempt_settlement_inquire, dispute_settlement_inquire
from psp_adapters.errors import SettlementReportError
from psp_adapters.port import FeeSchedule, SettlementCsvLayout, SettlementReport, SettlementRow, SettlementRowError
from psp_adapters.registry import connector_names, get_adapter
from reconciliation.errors import SettlementFileInvalidError, SettlementRunBusyError
from reconciliation.models import (
    DISCREPANCY_KINDS,
    ReconciliationRun,
    ReconOutcome,
    ReconRunStatus,
    StatementLine,
)
from reconciliation.selectors import refund_reversed_sql
from reconciliation.services.discrepancies import (
    Recovered,
    discrepancies_settled_resolve,
    lines_recover,
    merged_lines,
    recovered_metadata,
    recovered_total,
    recovery_legs,
)
from reconciliation.services.locks import reconcile_psp_lock, reconcile_start_lock
from reconciliation.services.report_copy import (
    COPY_POSITION,
    RAW,
    STAGE_COLUMNS,
    STAGE_NAMES,
    WIDTHS,
    CopyParsed,
    CopyRefusedError,
    copy_parse,
    stage_typed,
)

logger = logging.getLogger("payera.reconciliation")

CHUNK = 50_000
MATCH_WORK_MEM = "256MB"
_CURRENCY = re.compile(r"^[A-Z]{3}$")
MAX_STORED_ERRORS = 1000
POSTED_OUTCOMES = (ReconOutcome.MATCHED, ReconOutcome.FEE_MISMATCH)  # the money arrived as reported
# An earlier line (alias o) counts as imported (its row key seen before, a row sent again) only when
# its run is done: the lines of a run still importing, or of one that crashed or failed and whose
# undo failed too, are not final (a failure removes them). One lookup of the run's primary key, and
# only for the few keys found.
FINAL = f"EXISTS (SELECT 1 FROM {ReconciliationRun._meta.db_table} fr WHERE fr.id = o.run_id AND fr.status = 'done')"

Progress = Callable[[str, int, int], None]  # (phase, done, total)

STAGE = "recon_stage"  # a TEMP table: private to this connection, no WAL, no indexes


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    run_id: str
    created: bool  # False: this file was imported before, nothing changed
    rows: int
    matched: int
    discrepancies: dict[str, int]
    row_errors: tuple[dict, ...] = ()
    row_error_count: int = 0
    healed: int = 0
    receivable: tuple[dict, ...] = field(default=())

    def as_contract(self) -> dict:
        """The JSON of `manage.py reconcile --json` (CONTRACT.md)."""
        return {"rows": self.rows, "matched": self.matched, "discrepancies": dict(self.discrepancies)}


def run_busy_for() -> dt.timedelta:
    """An import that progressed (its heartbeat, `progress_at`) within this is running: the same
    file or another file of an overlapping period is busy; one that has not progressed for longer
    crashed and is taken over (setting RECONCILIATION_RUN_BUSY_MINUTES, default 30)."""
    from django.conf import settings

    return dt.timedelta(minutes=float(getattr(settings, "RECONCILIATION_RUN_BUSY_MINUTES", 30)))


class RunTakenOverError(RuntimeError):
    """This import had not progressed for RECONCILIATION_RUN_BUSY_MINUTES and another import of
    the file took its run over: it stops at its next progress and leaves the run to that one."""


def _beat(run: ReconciliationRun, **fields) -> None:
    """Progress of the import (its own short transaction, or the one of the chunk it loaded):
    `fields` on the run and its heartbeat bumped. Only while the run is still this import's (its
    attempt unchanged, and not finished): a run another import took over raises
    RunTakenOverError, so the two never race on one run."""
    active = ReconciliationRun.objects.filter(pk=run.pk, attempt=run.attempt).exclude(
        status__in=(ReconRunStatus.DONE, ReconRunStatus.FAILED)
    )
    if not active.update(progress_at=timezone.now(), **fields):
        raise RunTakenOverError(
            f"reconciliation {run.id} was taken over by another import (no progress for"
            f" {run_busy_for()}); this import stops"
        )


def row_key(psp: str, row: SettlementRow) -> str:
    """What makes a settlement line the same line in any file: the PSP's id of the operation (or
    of the authorization when the PSP gives no operation id) and the kind."""
    return f"{psp}:{row.kind}:{row.operation_psp_reference or row.psp_reference}"[: WIDTHS["row_key"]]


def _result(run: ReconciliationRun, *, created: bool) -> ReconcileResult:
    s = run.summary or {}
    return ReconcileResult(
        run_id=run.id,
        created=created,
        rows=s.get("rows", 0),
        matched=s.get("matched", 0),
        discrepancies={k: s.get("discrepancies", {}).get(k, 0) for k in DISCREPANCY_KINDS},
        row_errors=tuple(run.row_errors),
        row_error_count=run.row_error_count,
        healed=s.get("healed", 0),
        receivable=tuple(s.get("receivable", ())),
    )


def reconcile_import(
    *,
    psp: str,
    raw: bytes,
    file_name: str = "",
    source: str = "command",
    actor: str = "",
    progress: Progress | None = None,
) -> ReconcileResult:
    """Import one settlement report of `psp` and reconcile it. Idempotent on the file's content."""
    adapter = get_adapter(psp)
    sha = hashlib.sha256(raw).hexdigest()
    done = ReconciliationRun.objects.filter(psp=psp, file_sha256=sha, status=ReconRunStatus.DONE).first()
    if done is not None:
        return _result(done, created=False)
    clock = _Clock()
    try:
        # PostgreSQL parses a plain CSV report itself (COPY); SQLite and other files parse in Python,
        # and so does a file that holds a card number (its text cells are masked before the load)
        copy = connection.vendor == "postgresql" and not data_has_card_number(raw)
        layout = adapter.settlement_csv_layout(raw) if copy else None
        report, masked = (None, 0) if layout is not None else _read(adapter, raw)
    except SettlementReportError as exc:
        raise SettlementFileInvalidError(f"{psp} settlement report refused: {exc.message}") from None
    clock.lap("parse")
    if layout is not None:
        lines = layout.body.count(b"\n")
        run = _run_start(psp=psp, sha=sha, file_name=file_name, source=source, actor=actor,
                         period=(layout.period_start, layout.period_end), errors=(), total=lines)  # fmt: skip
    else:
        assert report is not None
        run = _run_start(psp=psp, sha=sha, file_name=file_name, source=source, actor=actor,
                         period=(report.period_start, report.period_end), errors=report.errors,
                         total=len(report.rows))  # fmt: skip
    try:
        return _import(run, adapter, raw, layout=layout, report=report, masked=masked, clock=clock, progress=progress)
    except SettlementFileInvalidError:
        raise  # the file was refused: the run is gone (_read_or_refuse)
    except BaseException as exc:
        _run_fail(run, exc)
        if _data_error(exc):  # a value the database would not store (the load's COPY)
            raise SettlementFileInvalidError(
                f"{psp} settlement report refused: a value could not be stored ({_first_line(exc)});"
                f" run {run.id} failed, nothing was imported"
            ) from exc
        raise


def _import(
    run: ReconciliationRun, adapter, raw: bytes, *, layout: SettlementCsvLayout | None,
    report: SettlementReport | None, masked: int, clock: _Clock, progress: Progress | None,
) -> ReconcileResult:  # fmt: skip
    """Load, match, heal, post and finish a recorded run (reconcile_import: any failure fails it)."""
    psp = run.psp
    fast: CopyParsed | None = None  # a clean file the match reads straight from its COPY (not staged)
    if layout is not None:
        parsed = _load_copy(run, layout, progress=progress)
        if parsed is None:  # COPY refused the file: the adapter's Python parser reads it
            report, masked = _read_or_refuse(run, adapter, raw)
        else:
            currencies, fast = set(parsed.currencies), parsed
        clock.lap("load")
    if report is not None:
        _load(run, report, progress=progress)
        currencies = {r.currency for r in report.rows}
        clock.lap("load")
    parser = "python" if report is not None else "postgresql"
    _stage_done(run, staged=fast is None or fast.source is None)
    if progress:
        progress("matching", 0, 1)
    fee_sql = _fee_sql(adapter.fee_schedule, currencies)
    try:
        if fast is not None and fast.source is not None:
            assert layout is not None
            tally = _match_fast(run, fee_sql=fee_sql, layout=layout, fast=fast)
        else:
            try:
                tally = _match(run, fee_sql=fee_sql)
            except IntegrityError as exc:
                if not _key_once(exc):
                    raise
                _stage_done(run, staged=True)  # another import finished with one of these keys meanwhile
                tally = _match(run, fee_sql=fee_sql)
    except IntegrityError as exc:
        if not _key_once(exc):
            raise
        raise _key_held_busy(run) from exc
    clock.lap("match")
    if progress:
        progress("matching", 1, 1)
    healing = any(g.outcome == ReconOutcome.MISSING_IN_PAYERA for g in tally)
    if healing:
        _phase(run, ReconRunStatus.HEALING, progress)
    healed = _heal(run, tally)
    if healed:  # healed lines changed outcome and journal: count the run's lines again
        tally = _tally(run)
    if healing and progress:
        progress("healing", 1, 1)
    clock.lap("heal")
    _phase(run, ReconRunStatus.POSTING, progress)
    summary = _finish(run, tally, healed=healed, seconds=clock.laps, parser=parser, masked=masked)
    if progress:
        progress("posting", 1, 1)
    run.refresh_from_db()
    logger.info("reconciliation %s of %s: %s", run.id, psp, {k: summary[k] for k in ("rows", "matched")})
    return _result(run, created=True)


def _key_held_busy(run: ReconciliationRun) -> SettlementRunBusyError:
    """A row key of this file is held by a line of an import that is not finished (its run still
    importing another period, or one that failed and whose lines are not undone yet): not final,
    so not "seen before", and the unique row key index refuses a second line. The file imports
    once that import is done (its rows then the report sent again) or failed (then they settle)."""
    others = (
        ReconciliationRun.objects.filter(psp=run.psp)
        .exclude(pk=run.pk)
        .exclude(status__in=(ReconRunStatus.DONE, ReconRunStatus.FAILED))
        .order_by("created_at")
        .values_list("id", flat=True)
    )
    holders = list(others)
    names = ", ".join(holders[:3]) or "another import"
    return SettlementRunBusyError(
        f"rows of this file are in the lines of {names} of {run.psp}, an import not finished yet; nothing"
        " was imported: import this file again once it has finished",
        runs=holders,
    )


def _phase(run: ReconciliationRun, status: str, progress: Progress | None) -> None:
    """The run page shows the phase the import is in (committed at once)."""
    _beat(run, status=status)
    if progress:
        progress(str(status), 0, 1)


def _data_error(exc: BaseException) -> bool:
    """Django's DataError, or psycopg's (a COPY runs on psycopg's own cursor)."""
    if isinstance(exc, DataError):
        return True
    try:
        from psycopg import DataError as PsycopgDataError
    except ImportError:  # pragma: no cover  (SQLite only)
        return False
    return isinstance(exc, PsycopgDataError)


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]


def _run_fail(run: ReconciliationRun, exc: BaseException) -> None:
    """An import that failed after its run was recorded: the run's lines and discrepancies are
    removed (no settlement journal names them: the journals are posted in the transaction that
    finishes the run) and the run is marked failed with the error. Its row keys are free again: a
    corrected file imports, and the same file again takes the failed run over and imports it from
    scratch. Best effort: should the database refuse even this, the run stops progressing and is
    taken over once it has not progressed for RECONCILIATION_RUN_BUSY_MINUTES. A run another import
    took over meanwhile (its attempt counted up) is that import's: left alone."""
    logger.error("reconciliation %s of %s failed: %s", run.id, run.psp, _first_line(exc), exc_info=exc)
    try:
        with transaction.atomic(durable=True):
            state = (
                ReconciliationRun.objects.select_for_update()
                .filter(pk=run.pk, attempt=run.attempt)
                .values_list("status", flat=True)
            )
            if next(iter(state), ReconRunStatus.DONE) == ReconRunStatus.DONE:
                return  # finished (its journals posted), taken over or gone: nothing to undo
            _undo([run.pk], error=f"{type(exc).__name__}: {_first_line(exc)}", finished_at=timezone.now())
    except Exception:  # noqa: BLE001  (the original error is what the caller must see)
        logger.exception("reconciliation %s: the failed run could not be marked failed", run.id)


def _undo(run_ids: list[str], *, error: str, finished_at: dt.datetime, **fields) -> None:
    """Unfinished runs undone (in the caller's transaction): their lines and discrepancies removed
    (no settlement journal names them) and the runs marked failed with `error` (and `fields`)."""
    from reconciliation.models import Discrepancy

    Discrepancy.objects.filter(run_id__in=run_ids).delete()
    StatementLine.objects.filter(run_id__in=run_ids).delete()
    # a run of a file the pull left (_pull_left) stays marked: its day is due until the file imports
    left = set(ReconciliationRun.objects.filter(pk__in=run_ids, summary__pull_left=True).values_list("pk", flat=True))
    for ids, summary in (
        ([i for i in run_ids if i not in left], {"error": error}),
        (list(left), {"error": error, "pull_left": True}),
    ):
        if ids:
            ReconciliationRun.objects.filter(pk__in=ids).update(
                status=ReconRunStatus.FAILED, rows_loaded=0, finished_at=finished_at, summary=summary, **fields
            )


@transaction.atomic(durable=True)
def _run_start(
    *, psp: str, sha: str, file_name: str, source: str, actor: str,
    period: tuple[dt.date | None, dt.date | None], errors: Iterable[SettlementRowError], total: int,
) -> ReconciliationRun:  # fmt: skip
    """Record the run (committed at once, so its progress shows) or take over an unfinished one
    of the same file: a `failed` run at once, a run left in any phase of its import (`loading`
    included: an import that crashed) once it has not progressed (its heartbeat, `progress_at`)
    for run_busy_for(); one that progressed within it is an import still running
    (settlement_run_busy), however long ago it started. Its lines are loaded again from scratch,
    its start time and heartbeat are now, and its attempt counts up (the import that crashed,
    should it be alive after all, finds its run taken over at its next progress and stops).

    Another file of the PSP whose period overlaps this one's (the same day's report as other
    bytes: the pull's LF, the portal's CRLF) is busy too while its import runs: its lines are not
    final (a failure deletes them), so this file's rows must not be read as those lines "sent
    again". The PSP's start lock makes two starts take turns, so each sees the other's run."""
    reconcile_start_lock(psp)  # before the run row (the only order any start takes them in)
    run = ReconciliationRun.objects.select_for_update().filter(psp=psp, file_sha256=sha).first()
    now = timezone.now()
    # first (it waits for the lock of a run that looks stale: an import inside its match holds it,
    # and beats before its commit), then what runs: looked at after that wait (review 15e: looked
    # at before it, another file of the period imported next to an import in a long match)
    _crashed_undo(psp=psp, sha=sha, now=now)
    running = _running_other(psp=psp, sha=sha, period=period, now=now)
    if running is not None:
        raise SettlementRunBusyError(
            f"{running.id} is importing another file of this period right now ({_busy_with(running)}), and"
            f" two files of one {psp} period import one after the other. Nothing was imported from this file:"
            " import it again once that import has finished (its run page shows its progress)",
            runs=[running.id],
        )
    if run is not None:
        if run.status == ReconRunStatus.DONE or (
            run.status != ReconRunStatus.FAILED and now - run.progress_at < run_busy_for()
        ):
            raise SettlementRunBusyError(
                f"{run.id} is importing this file right now ({_busy_with(run)}): nothing more was done;"
                " its run page shows its progress",
                runs=[run.id],
            )
        run.discrepancies.all().delete()
        StatementLine.objects.filter(run=run).delete()
        # a file the pull left (_pull_left), or whose scheduled import failed or crashed, stays marked
        # until its import is done (_finish's summary): its day is due for the pull (pull_days) also
        # when this import (an upload of the same bytes) fails
        left = (run.summary or {}).get("pull_left") or run.source == "scheduled"
        summary = {"pull_left": True} if left else {}
        run.created_at, run.progress_at, run.finished_at, run.summary = now, now, None, summary
        run.attempt += 1  # the import it is taken from stops at its next progress (_beat)
    else:
        try:
            with transaction.atomic():
                run = ReconciliationRun.objects.create(psp=psp, file_sha256=sha, created_at=now, progress_at=now)
        except IntegrityError:
            raise SettlementRunBusyError("this file is being imported right now") from None
    run.file_name = mask_text(file_name)[:255]  # shown in the admin: a card number in a name is masked
    run.source = source
    run.created_by = actor[:150]
    run.status = ReconRunStatus.LOADING
    _describe(run, period=period, errors=errors, total=total)
    run.save()
    return run


def _busy_with(run: ReconciliationRun) -> str:
    """What a busy answer says of the import running: period, phase, start and last progress."""
    period = f"{run.psp} {run.period_start or '?'}" + (
        f" to {run.period_end}" if run.period_end and run.period_end != run.period_start else ""
    )
    at = "%H:%M:%S UTC"
    return (f"{period}, {run.status}, started {run.created_at.astimezone(dt.UTC):{at}},"
            f" last progress {run.progress_at.astimezone(dt.UTC):{at}}")  # fmt: skip


def _crashed_undo(*, psp: str, sha: str, now: dt.datetime) -> None:
    """The runs of other files of `psp` that crashed (not done, not failed, no progress within
    run_busy_for()) are undone as their import's failure would have undone them: lines and
    discrepancies removed (none of their lines is final: no journal names them, FINAL never
    counts them), status failed, attempt counted up (their import, should it wake up, stops). So
    their row keys are free for this file (the unique row key index) and their lines are never
    read as this file's rows "sent again" (a failed import whose undo failed too)."""
    crashed = list(
        ReconciliationRun.objects.select_for_update()
        .filter(psp=psp, progress_at__lte=now - run_busy_for())
        .exclude(status__in=(ReconRunStatus.DONE, ReconRunStatus.FAILED))
        .exclude(file_sha256=sha)
        .values_list("id", flat=True)
    )
    if not crashed:
        return
    _undo(crashed, error=f"no progress for {run_busy_for()}: the import crashed; undone by the next import",
          finished_at=now, attempt=F("attempt") + 1)  # fmt: skip
    transaction.on_commit(  # the start may still answer busy (then nothing was undone)
        lambda: logger.error("reconciliation of %s: runs %s had crashed (no progress for %s); undone", psp, crashed,
                             run_busy_for())  # fmt: skip
    )


def _running_other(
    *, psp: str, sha: str, period: tuple[dt.date | None, dt.date | None], now: dt.datetime
) -> ReconciliationRun | None:
    """A run of another file of `psp` still in its import (it progressed within run_busy_for():
    one that has not crashed) whose period overlaps `period` (a period unknown on either side
    overlaps)."""
    runs = (
        ReconciliationRun.objects.filter(psp=psp, progress_at__gt=now - run_busy_for())
        .exclude(status__in=(ReconRunStatus.DONE, ReconRunStatus.FAILED))
        .exclude(file_sha256=sha)
    )
    start, end = period
    if start is not None and end is not None:
        runs = runs.filter(Q(period_start__isnull=True) | Q(period_start__lte=end)).filter(
            Q(period_end__isnull=True) | Q(period_end__gte=start)
        )
    return runs.order_by("created_at").first()


def _describe(
    run: ReconciliationRun, *, period: tuple[dt.date | None, dt.date | None],
    errors: Iterable[SettlementRowError], total: int,
) -> None:  # fmt: skip
    # a message may quote the cell (a card number in a shifted column): kept and shown masked
    listed = [{"line": e.line_number, "message": mask_text(e.message)} for e in errors]
    run.period_start, run.period_end = period
    run.rows_total, run.rows_loaded = total, 0
    run.row_errors, run.row_error_count = listed[:MAX_STORED_ERRORS], len(listed)


# the text cells of a row: a card number in one (a column shifted by the PSP's export) is masked
TEXT_FIELDS = ("reference", "psp_reference", "payout_batch_id", "operation_reference", "operation_psp_reference")
# ... and its amounts: one that is a card number (13-19 digits, a scheme's prefix, Luhn: no real
# settlement line of minor units) makes the row a row error, its number quoted masked
AMOUNT_FIELDS = ("gross", "fee", "net")


def _read(adapter, raw: bytes) -> tuple[SettlementReport, int]:
    """The adapter's Python parser, then every card number in a row's text cells masked (BIN and
    last 4 kept, as row errors quote them): nothing stores one, neither the lines, nor the
    settlement journal's reference, memo and metadata (append-only), nor the CSV exports.
    The row imports as it stands (its money is the PSP's, a payout batch id is only a label).
    Returns the report and how many of its rows had a card number masked."""
    report = adapter.read_settlement_report(raw)
    if not report.rows or not data_has_card_number(raw):  # the usual file: one fast scan
        return report, 0
    rows, masked, refused = [], [], []
    for row in report.rows:
        amounts = [f for f in AMOUNT_FIELDS if has_card_number(str(abs(getattr(row, f))))]
        if amounts:  # a card number read as an amount: the row's money is unknown, so it is not imported
            refused.append(SettlementRowError(
                line_number=row.line_number,
                message=f"{', '.join(amounts)} holds a card number, not an amount (masked: "
                        f"{mask_pans(str(abs(getattr(row, amounts[0]))))}); the row is not imported",
            ))
            continue
        changed = {f: mask_pans(v) for f in TEXT_FIELDS if (v := getattr(row, f)) and has_card_number(v)}
        if changed:
            masked.append(row.line_number)
            row = dataclasses.replace(row, **changed)
        rows.append(row)
    if masked or refused:
        logger.warning("%s settlement report: a card number masked in the text cells of lines %s, refused in"
                       " the amounts of lines %s", report.psp, masked[:20], [e.line_number for e in refused][:20])
        errors = tuple(sorted((*report.errors, *refused), key=lambda e: e.line_number))
        report = dataclasses.replace(report, rows=tuple(rows), errors=errors)
    return report, len(masked) + len(refused)


def _read_or_refuse(run: ReconciliationRun, adapter, raw: bytes) -> tuple[SettlementReport, int]:
    """The adapter's Python parser, for a file COPY refused; the run takes its period and errors."""
    try:
        report, masked = _read(adapter, raw)
    except SettlementReportError as exc:  # nothing was staged: forget the run
        with transaction.atomic(durable=True):
            StatementLine.objects.filter(run=run).delete()
            ReconciliationRun.objects.filter(pk=run.pk).delete()
        raise SettlementFileInvalidError(f"{run.psp} settlement report refused: {exc.message}") from None
    _describe(run, period=(report.period_start, report.period_end), errors=report.errors, total=len(report.rows))
    run.save(update_fields=["period_start", "period_end", "rows_total", "rows_loaded", "row_errors", "row_error_count"])
    return report, masked


def _stage_create() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {STAGE}")
        stage_columns = ", ".join(f"{n} {t}" for n, t in STAGE_COLUMNS)
        cursor.execute(f"CREATE TEMP TABLE {STAGE} ({stage_columns}, seen_before boolean NOT NULL DEFAULT false)")


def _load_copy(run: ReconciliationRun, layout: SettlementCsvLayout, *, progress: Progress | None) -> CopyParsed | None:
    """PostgreSQL parses the file (report_copy): rows staged (or, for a clean file, a SELECT of them
    for the match), unreadable lines on the run. None when COPY refused the file (nothing staged)."""
    _stage_create()
    total = run.rows_total

    def on_chunk(lines: int) -> None:
        _beat(run, rows_loaded=min(lines, total))
        if progress:
            transaction.on_commit(lambda: progress("loading", min(lines, total), total))

    try:
        parsed = copy_parse(psp=run.psp, layout=layout, stage=STAGE, on_chunk=on_chunk)
    except CopyRefusedError as exc:
        logger.info("reconciliation %s: COPY refused the file (%s); parsing it in Python", run.id, exc)
        ReconciliationRun.objects.filter(pk=run.pk).update(rows_loaded=0)
        return None
    _copy_staged(run, parsed)
    return parsed


def _copy_staged(run: ReconciliationRun, parsed: CopyParsed) -> None:
    """The run takes what PostgreSQL read of the file: its period, row count and unreadable lines."""
    errors = [SettlementRowError(line_number=line, message=message) for line, message in parsed.errors]
    _describe(run, period=(parsed.period_start, parsed.period_end), errors=errors, total=parsed.rows)
    run.rows_loaded = parsed.rows
    run.save(update_fields=["period_start", "period_end", "rows_total", "rows_loaded", "row_errors", "row_error_count"])


def _tuples(run: ReconciliationRun, rows: Iterable[SettlementRow]) -> Iterable[tuple]:
    psp, w = run.psp, WIDTHS
    for r in rows:
        yield (
            r.line_number, row_key(psp, r), str(r.kind), r.reference[: w["reference"]],
            r.psp_reference[: w["psp_reference"]], (r.operation_reference or "")[: w["operation_reference"]],
            (r.operation_psp_reference or "")[: w["operation_psp_reference"]], r.gross, r.fee, r.net,
            r.currency, r.settled_on, r.payout_batch_id[: w["payout_batch_id"]],
        )  # fmt: skip


def _load(run: ReconciliationRun, report: SettlementReport, *, progress: Progress | None) -> None:
    """Bulk load the rows into the staging table, in chunks (progress shows on the run page)."""
    columns = ", ".join(STAGE_NAMES)
    rows = report.rows
    total = len(rows)
    _stage_create()
    for start in range(0, total, CHUNK):
        chunk = _tuples(run, rows[start : start + CHUNK])
        with transaction.atomic(durable=True):
            with connection.cursor() as cursor:
                if connection.vendor == "postgresql":
                    with cursor.cursor.copy(f"COPY {STAGE} ({columns}) FROM STDIN") as copy:
                        for values in chunk:
                            copy.write_row(values)
                else:
                    marks = ", ".join(["%s"] * len(STAGE_NAMES))
                    cursor.executemany(f"INSERT INTO {STAGE} ({columns}) VALUES ({marks})", list(chunk))
            loaded = min(total, start + CHUNK)
            _beat(run, rows_loaded=loaded)
        if progress:
            progress("loading", loaded, total)


def _stage_done(run: ReconciliationRun, *, staged: bool) -> None:
    """Statistics for the planner, and the staged keys some earlier finished run already has (a
    file that was not staged: the match looks them up itself)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":  # a temp table has no statistics until analyzed: plans go wrong
            # a small sample is enough for these plans (hash joins of the whole file)
            cursor.execute("SET default_statistics_target = 10")
            cursor.execute(f"ANALYZE {STAGE if staged else RAW}")
            cursor.execute("RESET default_statistics_target")
        if not staged:
            _beat(run, status=ReconRunStatus.MATCHING)
            return
        # rows some earlier run already has (found before the INSERT: a statement that reads the
        # table it inserts into scans its own new rows too)
        lines = StatementLine._meta.db_table
        cursor.execute(f"UPDATE {STAGE} SET seen_before = true WHERE EXISTS"
                       f" (SELECT 1 FROM {lines} o WHERE o.row_key = {STAGE}.row_key AND NOT o.duplicate"
                       f" AND {FINAL})")
    _beat(run, status=ReconRunStatus.MATCHING, rows_loaded=run.rows_total)


def _outcome_sql(src: str, *, duplicate: str, kinds: Iterable[str] | None = None) -> str:
    """The matching SELECT over `src` (alias s): each line's outcome and what it matched. Joins
    captures, refunds, disputes (chargebacks), won disputes (chargeback reversals) and reversed
    refunds (refund reversals) of the line's attempt at this PSP (read only); only those of the
    record types in `kinds`, when the file's are known (a report of captures joins captures)."""
    t = payments_selectors.settlement_tables()
    joins = {
        "c": ("capture", "", f"""
  LEFT JOIN {t["capture"]} c ON s.kind = 'capture' AND c.attempt_id = a.id AND c.status = 'succeeded'"""),
        # a refund that succeeded; one returned since (reversed) did succeed too: its line matches
        "r": ("refund", "-", f"""
  LEFT JOIN {t["refund"]} r ON s.kind = 'refund' AND r.attempt_id = a.id
       AND r.id = s.operation_reference AND (r.status = 'succeeded' OR {refund_reversed_sql("r")})"""),
        "d": ("chargeback", "-", f"""
  LEFT JOIN {t["dispute"]} d ON s.kind = 'chargeback' AND d.attempt_id = a.id
       AND d.psp_dispute_id = s.operation_psp_reference"""),
        # a won dispute's money coming back: only a dispute Payera knows as won matches it
        "v": ("chargeback_reversal", "", f"""
  LEFT JOIN {t["dispute"]} v ON s.kind = 'chargeback_reversal' AND v.attempt_id = a.id
       AND v.psp_dispute_id = s.operation_psp_reference AND v.status = 'won'"""),
        # a refund the shopper's bank sent back: only a refund Payera knows as reversed matches it
        "w": ("refund_reversal", "", f"""
  LEFT JOIN {t["refund"]} w ON s.kind = 'refund_reversal' AND w.attempt_id = a.id
       AND w.id = s.operation_reference AND {refund_reversed_sql("w")}"""),
    }  # fmt: skip
    used = [x for x, (kind, _, _) in joins.items() if kinds is None or kind in kinds] or ["c"]

    def first(column: str, *, signed: bool = False, default: str = "") -> str:
        items = [f"{joins[x][1] if signed else ''}{x}.{column}" for x in used] + ([default] if default else [])
        return items[0] if len(items) == 1 else f"COALESCE({', '.join(items)})"

    return f"""
  SELECT s.*,
    CASE
      WHEN {duplicate} THEN 'duplicate'
      WHEN {first("id")} IS NULL THEN 'missing_in_payera'
      WHEN s.currency <> {first("currency")} THEN 'currency_mismatch'
      WHEN s.gross <> {first("amount", signed=True)} THEN 'amount_mismatch'
      WHEN s.fee <> s.expected_fee OR s.net <> s.gross - s.fee THEN 'fee_mismatch'
      ELSE 'matched'
    END AS outcome,
    COALESCE(a.merchant_id, '') AS m_merchant_id,
    {first("id", default="''")} AS m_object_id,
    {first("amount", signed=True)} AS m_expected_gross,
    {first("currency", default="''")} AS m_expected_currency
  FROM {src} s
  LEFT JOIN {t["attempt"]} a ON a.id = s.reference AND a.connector = %s{"".join(joins[x][2] for x in used)}"""


def _journal_sql(alias: str) -> str:
    """The settlement journal a line is posted in (matched or fee difference: the money arrived)."""
    return (f"CASE WHEN {alias}.outcome IN ('matched', 'fee_mismatch') THEN 'psp_settlement:' || %s || ':' ||"
            f" {alias}.currency || ':' || COALESCE(NULLIF({alias}.payout_batch_id, ''), '-') ELSE '' END")


def _line_journal_sql(alias: str) -> str:
    """The journal of one line settled by the late heal (reheal.py): unique to the line."""
    return (f"CASE WHEN {alias}.outcome IN ('matched', 'fee_mismatch') THEN 'psp_settlement_line:' ||"
            f" {alias}.run_id || ':' || {alias}.line_number ELSE '' END")


def _fee_sql(schedule: FeeSchedule, currencies: Iterable[str]) -> str:
    """`FeeSchedule.fee` as a SQL expression over a staged row `st` (the PSP's agreed fee, to
    check the report's fee set-based): per mille of the gross plus fixed parts scaled to the
    currency's exponent, in integers (the same floor divisions as the Python)."""
    whens = " ".join(
        f"WHEN '{c}' THEN {pow(10, currency_exponent(c))}" for c in sorted(currencies) if _CURRENCY.match(c)
    )
    scale = f"(CASE st.currency {whens} ELSE 1 END)" if whens else "1"
    pm, cf = int(schedule.capture_per_mille), int(schedule.capture_fixed)
    rf, kf = int(schedule.refund_fixed), int(schedule.chargeback_fixed)
    return (f"(CASE st.kind WHEN 'capture' THEN (ABS(st.gross) * {pm} + 500) / 1000 + {cf} * {scale} / 100"
            f" WHEN 'refund' THEN {rf} * {scale} / 100 WHEN 'chargeback' THEN {kf} * {scale} / 100 ELSE 0 END)")


SEEN = "recon_seen"  # TEMP, dropped at commit: the row keys of a file that was not staged that earlier runs have


KEY_ONCE = "recon_line_key_once"  # the unique index of the row keys of the lines that are not duplicates


def _key_once(exc: IntegrityError) -> bool:
    """The lines' unique row key index refused a line (PostgreSQL names it)."""
    return getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None) == KEY_ONCE


def _match_fast(run: ReconciliationRun, *, fee_sql: str, layout: SettlementCsvLayout, fast: CopyParsed) -> list[_Group]:
    """Match a file that was not staged. Optimistically first: no row key twice in the file (the
    usual report), so no sort of the file for the duplicate window; the lines' unique row key index
    refuses the INSERT (or its rebuild) otherwise, and the match runs again with the window. An
    amount PostgreSQL would not cast stages the file (that row listed) and matches the staged rows."""
    assert fast.source is not None
    source = (fast.source, fast.source_params)
    try:
        try:
            return _match(run, fee_sql=fee_sql, source=source, optimistic=True, kinds=fast.kinds)
        except IntegrityError as exc:  # a key twice in the file, or another import just settled one
            if not _key_once(exc):
                raise
            return _match(run, fee_sql=fee_sql, source=source, kinds=fast.kinds)
    except DataError:
        _copy_staged(run, stage_typed(psp=run.psp, layout=layout, stage=STAGE))
        _stage_done(run, staged=True)
        return _match(run, fee_sql=fee_sql)


def _match(
    run: ReconciliationRun, *, fee_sql: str, source: tuple[str, tuple] | None = None, optimistic: bool = False,
    kinds: Iterable[str] | None = None,
) -> list[_Group]:  # fmt: skip
    """One INSERT ... SELECT: the staged rows (or `source`: a SELECT of the rows of a file that was
    not staged, and its parameters), matched, into the lines. A row is a duplicate when its key is
    in an earlier run's lines or earlier in this file (`optimistic`: only when an earlier run has
    it; a key twice in the file then fails the INSERT on the unique index, see _match_fast)."""
    lines = StatementLine._meta.db_table
    duplicate = "s.seen_before" if optimistic else "(s.first_line <> s.line_number OR s.seen_before)"
    # the duplicate window sorts the file by row key: byte order (equality is the same), not the
    # database's collation (PostgreSQL: C.UTF-8 compares through strcoll)
    key = 'st.row_key COLLATE "C"' if connection.vendor == "postgresql" else "st.row_key"
    rows, source_params = (STAGE, ()) if source is None else source
    first = "st.line_number" if optimistic else f"MIN(st.line_number) OVER (PARTITION BY {key})"
    cols = ", ".join(STAGE_NAMES)

    def insert_sql(seen: str) -> str:
        src = f"(SELECT st.*{seen}, {first} AS first_line, {fee_sql} AS expected_fee FROM {rows} st)"
        return f"""
INSERT INTO {lines} ({id_column}run_id, psp, {cols}, expected_fee, outcome, merchant_id, object_id, expected_gross,
                     expected_currency, healed, journal_reference, duplicate)
SELECT {id_value}%s, %s, {", ".join(f"m.{c}" for c in STAGE_NAMES)}, m.expected_fee, m.outcome, m.m_merchant_id,
       m.m_object_id, m.m_expected_gross, m.m_expected_currency, false, {_journal_sql("m")},
       m.outcome = 'duplicate'
FROM ({_outcome_sql(src, duplicate=duplicate, kinds=kinds)}) m"""

    params = [run.id, run.psp, run.id, *source_params, run.psp]
    id_column = id_value = ""
    with transaction.atomic(durable=True), connection.cursor() as cursor:
        # one long transaction without any other heartbeat: it holds the run row (still this
        # import's, else RunTakenOverError before anything is written) until its commit, and beats
        # again just before it, so a start that finds the run stale waits and then sees it busy
        # (it took a slow match for crashed and undid the run, whose lines the match then
        # committed on a failed run for good; review 15e)
        _beat(run)
        if connection.vendor == "postgresql":  # the duplicate window sorts the whole file: in memory
            cursor.execute(f"SET LOCAL work_mem = '{MATCH_WORK_MEM}'")
            seen = ""  # a staged file has its seen_before column
            if source is not None:  # looked up before the row key index may be set aside below
                seen = (f", st.row_key IN (SELECT row_key FROM {SEEN}) AS seen_before"
                        if _seen_create(cursor, run, rows, source_params) else ", false AS seen_before")
            rebuild = _indexes_set_aside(cursor, incoming=run.rows_total)
            cursor.execute("SET LOCAL jit = off")  # compiling this plan costs more than it saves
            # the lines' ids as one reserved block, numbered by the INSERT (no nextval() per line):
            # a file that was not staged by each row's position in its COPY (1..rows_total, no
            # gaps); a staged one by row_number(), a window that spools every row it numbers
            reserved = max(run.rows_total, 1)
            first_id = _line_ids_reserve(cursor, reserved)
            id_column = "id, "
            id_value = (
                f"{first_id - 1} + row_number() OVER (), " if source is None
                # beyond the block: no id, the INSERT fails (never: the COPY holds rows_total rows)
                else f"{first_id - 1} + CASE WHEN m.{COPY_POSITION} <= {reserved} THEN m.{COPY_POSITION} END, "
            )
            # the counts come from the INSERT itself (no second scan of a million new lines), from
            # a narrow RETURNING (the journal reference is derived): a million rows stay in memory
            cursor.execute(
                f"WITH ins AS ({insert_sql(seen)} RETURNING outcome, currency, payout_batch_id, gross, fee, net)"
                f" SELECT outcome, {_journal_sql('ins')}, currency, payout_batch_id, COUNT(*),"
                " COALESCE(SUM(gross), 0), COALESCE(SUM(fee), 0), COALESCE(SUM(net), 0) FROM ins"
                " GROUP BY outcome, currency, payout_batch_id ORDER BY 2, currency, outcome",
                [*params, run.id],
            )
            tally = _tally_rows(cursor.fetchall())
            if sum(g.count for g in tally) > reserved:  # never: rows_total counts the rows matched
                raise RuntimeError(f"reconciliation {run.id}: more lines than the ids reserved for them")
            if rebuild:
                cursor.execute(f"SET LOCAL maintenance_work_mem = '{MATCH_WORK_MEM}'")
                for statement in rebuild:
                    cursor.execute(statement)
        else:
            cursor.execute(insert_sql(""), params)
            tally = None
        cursor.execute(f"DROP TABLE IF EXISTS {STAGE}")
        if source is not None:
            cursor.execute(f"DROP TABLE IF EXISTS {RAW}")
        _beat(run)  # the row is locked since the first: no takeover came in between
    return tally if tally is not None else _tally(run)


LINE_IDS_LOCK = 0x7265636F  # a session advisory lock: the line id block reservations, one at a time


def _line_ids_reserve(cursor, n: int) -> int:
    """Reserve `n` consecutive ids of the lines' id sequence (outside the transaction: a sequence
    does not roll back; an import that fails leaves a gap) and return the first. A nextval() per
    line in a million-line INSERT costs about a fifth of the INSERT. Reservations take a session
    advisory lock for the moment of the nextval + setval, so two imports never share a block; on
    PostgreSQL every line is inserted here (the ORM's own nextval() is for tests and SQLite)."""
    seq = f"pg_get_serial_sequence('{StatementLine._meta.db_table}', 'id')"
    cursor.execute("SELECT pg_advisory_lock(%s)", [LINE_IDS_LOCK])
    try:
        cursor.execute(f"SELECT setval({seq}, nextval({seq}) + %s - 1)", [n])
        last = int(cursor.fetchone()[0])
    finally:
        cursor.execute("SELECT pg_advisory_unlock(%s)", [LINE_IDS_LOCK])
    return last - n + 1


def _seen_create(cursor, run: ReconciliationRun, rows: str, params: tuple) -> int:
    """The file's row keys that an earlier, finished run of this PSP already has (none when it has
    no lines: the usual first import of a PSP skips the lookup). Returns how many."""
    lines = StatementLine._meta.db_table
    cursor.execute(f"CREATE TEMP TABLE {SEEN} (row_key varchar(200) NOT NULL) ON COMMIT DROP")
    cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {lines} WHERE psp = %s)", [run.psp])
    if not cursor.fetchone()[0]:
        return 0
    cursor.execute(f"INSERT INTO {SEEN} SELECT DISTINCT st.row_key FROM {rows} st"
                   f" WHERE EXISTS (SELECT 1 FROM {lines} o WHERE o.row_key = st.row_key"
                   f" AND NOT o.duplicate AND {FINAL})", list(params))  # fmt: skip
    return cursor.rowcount


BULK_MIN_ROWS = 100_000  # smaller imports keep the lines' indexes (maintaining them costs little)
LINE_BYTES = 200  # about, per line on disk: the lines table's size when it was never analyzed


def _indexes_set_aside(cursor, *, incoming: int) -> list[str]:
    """For an import at least as large as the lines table already is (and at least BULK_MIN_ROWS):
    drop the table's secondary indexes and its primary key (with the foreign keys that reference it)
    before the INSERT and return the statements that build them again after it, in the same
    transaction (a failure brings them back). Building an index over a
    million rows at once is several times cheaper than a million random inserts into it; over a
    much larger table it is not, so a daily import into a long history keeps its indexes. The DROP
    takes the table's exclusive lock (and the referencing tables': the discrepancies) until the
    commit: if another session holds one of them for more than a moment, the indexes stay (a
    savepoint)."""
    lines = StatementLine._meta.db_table
    if incoming < BULK_MIN_ROWS:
        return []
    cursor.execute(
        "SELECT c.reltuples, pg_relation_size(c.oid) FROM pg_class c WHERE c.oid = %s::regclass", [lines]
    )
    tuples, size = cursor.fetchone()
    existing = tuples if tuples >= 0 else size / LINE_BYTES  # -1: never analyzed
    if incoming < existing:
        return []
    cursor.execute(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = current_schema()"
        " AND i.tablename = %s AND i.indexname NOT IN"
        " (SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass) ORDER BY i.indexname",
        [lines, lines],
    )
    # a partial index of a few lines (the unmatched ones) stays: maintaining it costs a test per
    # line, building it again a scan of the whole table
    indexes = [
        (name, definition) for name, definition in cursor.fetchall()
        if " WHERE " not in definition or definition.startswith("CREATE UNIQUE")
    ]  # fmt: skip
    # the primary key too (maintained line by line it is ~15 % of the INSERT; built after it, over
    # ids in order, ~0.4 s per million), and with it the foreign keys that reference it (the
    # discrepancies' line): taken back, and checked, in the same transaction
    cursor.execute(
        "SELECT c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c WHERE c.conrelid = %s::regclass"
        " AND c.contype = 'p'",
        [lines],
    )
    primary = cursor.fetchall()
    cursor.execute(
        "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c"
        " WHERE c.confrelid = %s::regclass AND c.contype = 'f' ORDER BY 1, 2",
        [lines],
    )
    foreign = cursor.fetchall()
    try:
        with transaction.atomic():
            cursor.execute("SET LOCAL lock_timeout = '2s'")
            # the referencing tables before the lines table: an import finishing meanwhile writes
            # its discrepancies, then reads the lines (the same order: no deadlock)
            for table in dict.fromkeys(table for table, _, _ in foreign):
                cursor.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            for name, _ in indexes:
                cursor.execute(f'DROP INDEX "{name}"')
            for table, name, _ in foreign:
                cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
            for name, _ in primary:
                cursor.execute(f'ALTER TABLE {lines} DROP CONSTRAINT "{name}"')
            cursor.execute("SET LOCAL lock_timeout = 0")
    except OperationalError:
        logger.info("reconciliation: the lines table is busy; its indexes stay during this import")
        return []
    return (
        [definition for _, definition in indexes]
        + [f'ALTER TABLE {lines} ADD CONSTRAINT "{name}" {definition}' for name, definition in primary]
        + [f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}' for table, name, definition in foreign]
    )


TALLY_RETURNING = "outcome, journal_reference, currency, payout_batch_id, gross, fee, net"


def _tally_select(src: str) -> str:
    return (f"SELECT outcome, journal_reference, currency, MIN(payout_batch_id), COUNT(*), COALESCE(SUM(gross), 0),"
            f" COALESCE(SUM(fee), 0), COALESCE(SUM(net), 0) FROM {src}"
            " GROUP BY outcome, journal_reference, currency ORDER BY journal_reference, currency, outcome")


@dataclass(frozen=True, slots=True)
class _Group:
    outcome: str
    journal_reference: str
    currency: str
    batch: str
    count: int
    gross: int
    fee: int
    net: int


def _tally_rows(rows: Iterable[tuple]) -> list[_Group]:
    return [_Group(o, j, c, b or "", int(n), int(g), int(f), int(t)) for o, j, c, b, n, g, f, t in rows]


def _tally(run: ReconciliationRun) -> list[_Group]:
    """The run's lines by outcome, journal and currency (one scan of the run's lines)."""
    lines = StatementLine._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(_tally_select(f"(SELECT {TALLY_RETURNING} FROM {lines} WHERE run_id = %s) t"), [run.id])
        return _tally_rows(cursor.fetchall())


def rematch_sql(where: str, *, per_line: bool = False) -> str:
    """The UPDATE that matches "missing in Payera" lines again (after an inquiry or a late webhook),
    with the import's matching SELECT (`_outcome_sql`): the lines of the table that satisfy `where`
    (SQL over the lines' columns, its own parameters) and are still missing. Parameters, in order:
    the run id (the import's journal per currency and batch; none with `per_line`), those of
    `where`, then the PSP. `per_line`: a line that now matches names a journal of its own,
    `psp_settlement_line:<run>:<line number>` (the late heal, reheal.py: it posts each line once)."""
    lines = StatementLine._meta.db_table
    cols = ", ".join(STAGE_NAMES)
    missing = (f"(SELECT id, run_id, expected_fee, {cols} FROM {lines}"
               f" WHERE {where} AND outcome = 'missing_in_payera')")  # fmt: skip
    journal = _line_journal_sql("m") if per_line else _journal_sql("m")
    return f"""
UPDATE {lines} SET outcome = m.outcome, merchant_id = m.m_merchant_id, object_id = m.m_object_id,
       expected_gross = m.m_expected_gross, expected_currency = m.m_expected_currency,
       healed = m.outcome <> 'missing_in_payera', journal_reference = {journal}
FROM ({_outcome_sql(missing, duplicate="false")}) m
WHERE {lines}.id = m.id AND {lines}.outcome = 'missing_in_payera'"""


def _rematch(run: ReconciliationRun) -> None:
    """After the inquiries: the run's "missing in Payera" lines matched again (few rows)."""
    with transaction.atomic(durable=True), connection.cursor() as cursor:
        _beat(run)  # still this import's run, held until the commit (as the match)
        cursor.execute(rematch_sql("run_id = %s"), [run.id, run.id, run.psp])


DISPUTE_KINDS = ("chargeback", "chargeback_reversal")  # lines that name a dispute (its PSP id)


def _heal(run: ReconciliationRun, tally: list[_Group]) -> int:
    """Ask the PSP about what "missing in Payera" lines name (a lost webhook is the usual cause),
    then match those lines again (`heal_inquire`). Returns the number of lines healed."""
    if not any(g.outcome == ReconOutcome.MISSING_IN_PAYERA for g in tally):
        return 0
    if not heal_inquire("s.run_id = %s", [run.id], beat=lambda: _beat(run)):
        return 0
    _rematch(run)
    return StatementLine.objects.filter(run=run, healed=True).count()


def heal_inquire(where: str, params: list, *, beat: Callable[[], None] | None = None) -> int:
    """The inquiries behind the "missing in Payera" lines that satisfy `where` (SQL over the lines,
    alias s): a chargeback or chargeback reversal line names a dispute: the PSP is asked about that
    dispute (one inquiry per dispute, never per line), and its answer is applied as the dispute's
    webhook would be. Any other line (or a dispute line without the dispute's id): the attempt is
    inquired (one inquiry per attempt), its captures and refunds recorded. Only lines whose attempt
    Payera knows at the line's PSP. Attempts first: a dispute takes back a capture that must be
    recorded. Outside any transaction (PSP calls). Returns the number of inquiries made (the
    import's heal and the late heal, reheal.py). `beat`: called after each inquiry (the import's
    heartbeat: many inquiries take a while)."""
    t = payments_selectors.settlement_tables()
    kinds = ", ".join(f"'{k}'" for k in DISPUTE_KINDS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT DISTINCT s.reference, CASE WHEN s.kind IN ({kinds}) THEN s.operation_psp_reference ELSE '' END"
            f" FROM {StatementLine._meta.db_table} s"
            f" JOIN {t['attempt']} a ON a.id = s.reference AND a.connector = s.psp"
            f" WHERE {where} AND s.outcome = 'missing_in_payera'",
            params,
        )
        asked = cursor.fetchall()
    attempts = sorted({reference for reference, dispute in asked if not dispute})
    disputes = sorted((reference, dispute) for reference, dispute in asked if dispute)
    for attempt_id in attempts:
        attempt_settlement_inquire(attempt_id=attempt_id)
        if beat:
            beat()
    for attempt_id, dispute_id in disputes:
        dispute_settlement_inquire(attempt_id=attempt_id, psp_dispute_id=dispute_id)
        if beat:
            beat()
    return len(attempts) + len(disputes)


def settlement_lines(
    *, psp: str, currency: str, gross: int, net: int, recovered: Recovered | None = None
) -> tuple[PostingLine, ...]:
    """Bank cash (net) and PSP fee expense against the PSP receivable (gross). The fee booked is
    what the PSP kept, gross - net, not the fee its report states: a line whose net is not gross -
    fee (a fee difference, see _outcome_sql) still posts a balanced journal of the money that moved.
    `recovered`: what finance's resolutions had already cleared of the items settled here
    (discrepancies.lines_recover): the receivable is credited only what is still owed, the rest goes
    back to the accounts those clearings debited (a write-off's loss recovered, an adjustment's fee
    expense, suspense)."""
    fee = gross - net
    legs = [(Accounts.bank_cash(currency), net), (Accounts.psp_fee_expense(currency), fee),
            (Accounts.psp_receivable(psp, currency), -(gross - recovered_total(recovered, currency)))]  # fmt: skip
    return merged_lines(legs + recovery_legs(recovered))


def _journals(tally: list[_Group]) -> list[tuple[str, str, str, int, int, int, int]]:
    """(reference, currency, batch, gross, fee, net, lines) per settlement journal the lines name."""
    out: dict[tuple[str, str], list] = {}
    for g in tally:
        if not g.journal_reference:
            continue
        j = out.setdefault((g.journal_reference, g.currency), [g.journal_reference, g.currency, g.batch, 0, 0, 0, 0])
        j[2] = min(j[2], g.batch)
        # the fee the PSP kept is what it did not pay out (gross - net): a line whose net is not
        # gross - fee (a fee difference, see _outcome_sql) still posts a balanced journal
        j[3], j[4], j[5], j[6] = j[3] + g.gross, j[4] + g.gross - g.net, j[5] + g.net, j[6] + g.count
    return [tuple(out[k]) for k in sorted(out)]  # type: ignore[misc]


def _post_settlement(run: ReconciliationRun, tally: list[_Group], recovered: dict[str, dict] | None = None) -> int:
    """Post the matched lines, one journal per currency and payout batch (the reference the
    lines already name), each less what resolutions had cleared of its items (`recovered`, per
    journal reference: given back to the accounts they debited). Returns the number of journals."""
    posted = 0
    at = timezone.now()
    recovered = recovered or {}
    for reference, currency, batch, gross, _fee, net, count in _journals(tally):
        given_back = recovered.get(reference)
        legs = settlement_lines(psp=run.psp, currency=currency, gross=gross, net=net, recovered=given_back)
        if not legs:
            continue
        metadata = {"reconciliation_run": run.id, "psp": run.psp, "payout_batch": batch, "lines": count}
        if given_back:
            metadata["recovered"] = recovered_metadata(given_back)
        ledger_services.journal_post(
            reference=reference, lines=legs, occurred_at=at, kind=JournalKind.SETTLEMENT,
            memo=f"{run.psp} settlement {batch} ({count} lines)", metadata=metadata,
        )  # fmt: skip
        posted += 1
    return posted


DISCREPANCY_COLUMNS = (
    "run_id, line_id, kind, psp, merchant_id, reference, object_id, currency, psp_amount, payera_amount,"
    " difference, status, reason, adjustment_reference, assigned_to, resolved_by, created_at, updated_at"
)


def discrepancies_from_lines_sql(where: str, *, duplicates: bool = True) -> str:
    """The INSERT ... SELECT that opens a discrepancy for each line (alias s) matching `where` whose
    outcome is not matched. The import
    opens a run's (`s.run_id = %s`), the late heal one line's (reheal.py). A duplicate line
    identical to an earlier run's line of the same payout batch (amounts and currency too) is that
    report sent again, not money paid twice: it opens none (it still counts as a duplicate; the
    earlier line, and its discrepancy if it has one, stands for it) — only the first such line of
    the run: a second copy within the file is a duplicate discrepancy (`repeats_sql`). Its
    parameters: created_at, updated_at, then `where`'s twice (once when the caller knows the lines
    hold no `duplicate`: `duplicates=False` leaves that test out)."""
    from reconciliation.models import Discrepancy

    lines = StatementLine._meta.db_table
    return f"""
INSERT INTO {Discrepancy._meta.db_table} ({DISCREPANCY_COLUMNS})
SELECT s.run_id, s.id, s.outcome, s.psp, NULLIF(s.merchant_id, ''), s.reference, s.object_id, s.currency, s.gross,
       s.expected_gross,
       CASE WHEN s.outcome = 'fee_mismatch' THEN s.expected_fee - (s.gross - s.net)
            WHEN s.outcome = 'amount_mismatch' THEN s.gross - s.expected_gross
            ELSE s.gross END,
       'open', '', '', '', '', %s, %s
FROM {lines} s WHERE {where} AND s.outcome NOT IN ('', 'matched')""" + (
        f"""
  AND NOT (s.outcome = 'duplicate' AND EXISTS (SELECT 1 FROM {lines} o WHERE {SENT_AGAIN})
           AND s.id NOT IN ({repeats_sql(where)}))"""
        if duplicates
        else ""
    )


# A duplicate line (s) that is an earlier run's line (o) sent again: the same row key, the same
# payout batch, currency and amounts, and o is final (FINAL: its run is done). At most one such o:
# recon_line_key_once keeps the keys of the lines not flagged duplicate unique.
SENT_AGAIN = (
    "o.row_key = s.row_key AND NOT o.duplicate AND o.run_id <> s.run_id AND o.payout_batch_id = s.payout_batch_id"
    f" AND o.currency = s.currency AND o.gross = s.gross AND o.fee = s.fee AND o.net = s.net AND {FINAL}"
)


def repeats_sql(where: str) -> str:
    """The ids of the duplicate lines matching `where` (alias s: a run's lines) that repeat an
    earlier line of the same file (row key, payout batch, currency and amounts alike): only the
    first of such copies can be the report sent again; a row twice within the re-sent file is, as
    in a first import, a duplicate discrepancy (the PSP listing it twice), whatever an earlier
    run had. Uncorrelated (one window over the run's duplicates, hashed), `where`'s parameters again."""
    lines = StatementLine._meta.db_table
    return (
        f"SELECT w.id FROM (SELECT s.id, row_number() OVER (PARTITION BY s.row_key, s.payout_batch_id, s.currency,"
        f" s.gross, s.fee, s.net ORDER BY s.line_number) AS rn FROM {lines} s"
        f" WHERE {where} AND s.outcome = 'duplicate') w WHERE w.rn > 1"
    )


def _sent_again(run: ReconciliationRun) -> dict[str, dict[str, tuple[int, int, int, int]]]:
    """The run's lines that are an earlier run's line sent again, by that earlier line's outcome
    (today's: a line healed since counts as matched) and currency: (count, gross, fee, net). They opened no
    discrepancy and settled nothing; the import counts them as the earlier line counted, so a report
    sent again reads as it did the first time (a re-sent day of matched lines is 100 % matched)."""
    lines = StatementLine._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT o.outcome, s.currency, count(*), COALESCE(sum(s.gross), 0), COALESCE(sum(s.fee), 0),"
            f" COALESCE(sum(s.net), 0) FROM {lines} s"
            f" JOIN {lines} o ON {SENT_AGAIN} WHERE s.run_id = %s AND s.outcome = 'duplicate'"
            f" AND s.id NOT IN ({repeats_sql('s.run_id = %s')})"
            " GROUP BY o.outcome, s.currency",
            [run.id, run.id],
        )
        out: dict[str, dict[str, tuple[int, int, int, int]]] = {}
        for outcome, currency, n, gross, fee, net in cursor.fetchall():
            out.setdefault(outcome, {})[currency] = (int(n), int(gross), int(fee), int(net))
    return out


def _discrepancies_sql(run: ReconciliationRun, *, unmatched: bool, duplicates: bool = True) -> list[tuple[str, list]]:
    """The INSERT ... SELECT statements that open the run's discrepancies, with their parameters:
    its lines' (discrepancies_from_lines_sql), then what the period's report lacks."""
    from reconciliation.models import Discrepancy

    t = payments_selectors.settlement_tables()
    lines = StatementLine._meta.db_table
    dsc = Discrepancy._meta.db_table
    now = timezone.now()
    cols = DISCREPANCY_COLUMNS
    from_lines = discrepancies_from_lines_sql("s.run_id = %s", duplicates=duplicates)
    params = [now, now, run.id, run.id] if duplicates else [now, now, run.id]
    statements: list[tuple[str, list]] = [(from_lines, params)] if unmatched else []
    if run.period_start and run.period_end:
        # the period's items that no line names first (a line of this run or of a finished one:
        # the lines of an import not finished are not final, a failure removes them), then the attempt of each (by
        # its key: a report usually names them all, so few). OFFSET 0 keeps that order: the lines
        # of an import just made have no statistics yet, and the planner would hash every attempt
        if connection.vendor == "postgresql":
            fence, attempt = "OFFSET 0", (
                f"JOIN LATERAL (SELECT a.id, a.connector, a.merchant_id FROM {t['attempt']} a"
                " WHERE a.id = x.attempt_id AND a.connector = %s OFFSET 0) a ON true"
            )
        else:  # SQLite: no LATERAL (and no OFFSET without LIMIT); it joins in the written order
            fence, attempt = "", f"JOIN {t['attempt']} a ON a.id = x.attempt_id AND a.connector = %s"
        start = dt.datetime.combine(run.period_start, dt.time(), dt.UTC)
        end = dt.datetime.combine(run.period_end + dt.timedelta(days=1), dt.time(), dt.UTC)
        # (table, sign, which, its time, the kind of the line that names it): a capture by the
        # time it succeeded (`updated_at`), a refund by its own `succeeded_at` (set once:
        # refund_succeeded_time_idx); a won dispute's reversal by the time it was decided (its
        # chargeback line names the dispute too, so the reversal line is told by its kind); a
        # refund returned after it succeeded by the time it was returned (`reversed_at`, set once:
        # refund_reversed_at_idx; its refund line names it too, so the reversal line is told by
        # its kind)
        items = (
            (t["capture"], "", "x.status = 'succeeded'", "updated_at", ""),
            (t["refund"], "-", "x.status = 'succeeded'", "succeeded_at", ""),
            (t["dispute"], "", "x.status = 'won'", "closed_at", " AND l.kind = 'chargeback_reversal'"),
            (t["refund"], "", refund_reversed_sql("x"), "reversed_at", " AND l.kind = 'refund_reversal'"),
            # and its refund half by the time it succeeded, as any refund (its refund line, not
            # its reversal's)
            (t["refund"], "-", refund_reversed_sql("x"), "succeeded_at", " AND l.kind = 'refund'"),
        )
        for table, sign, status, at, line_kind in items:
            statements.append(
                (
                    f"""
INSERT INTO {dsc} ({cols})
SELECT %s, NULL, 'missing_at_psp', a.connector, a.merchant_id, a.id, x.id, x.currency, NULL, {sign}x.amount,
       -({sign}x.amount), 'open', '', '', '', '', %s, %s
FROM (SELECT x.* FROM {table} x WHERE {status} AND x.{at} >= %s AND x.{at} < %s
        AND NOT EXISTS (SELECT 1 FROM {lines} l WHERE l.psp = %s AND l.object_id = x.id{line_kind}
                        AND (l.run_id = %s OR {FINAL.replace("o.run_id", "l.run_id")}))
      {fence}) x
{attempt}
WHERE NOT EXISTS (SELECT 1 FROM {dsc} y WHERE y.kind = 'missing_at_psp' AND y.psp = a.connector
                  AND y.object_id = x.id AND (y.payera_amount > 0) = ({sign}x.amount > 0))""",
                    [run.id, now, now, start, end, run.psp, run.id, run.psp],
                )
            )
    return statements


class _Clock:
    """Seconds per phase of an import (kept in the run's summary: where a long import went)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._t, 3)
        self._t = now


def _finish(
    run: ReconciliationRun, tally: list[_Group], *, healed: int, seconds: dict[str, float], parser: str,
    masked: int = 0,
) -> dict:  # fmt: skip
    """One transaction: the discrepancies, the settlement journals and the run marked done (a
    failure leaves neither journals nor discrepancies: reconcile_import then fails the run)."""
    started = time.perf_counter()
    by_outcome: dict[str, tuple[int, int]] = {}
    settled: dict[str, int] = {}  # gross the run's posted lines settle, per currency (the receivable's running total)
    for g in tally:
        n, gross = by_outcome.get(g.outcome, (0, 0))
        by_outcome[g.outcome] = (n + g.count, gross + g.gross)
        if g.journal_reference:
            settled[g.currency] = settled.get(g.currency, 0) + g.gross
    unmatched = any(o != ReconOutcome.MATCHED for o in by_outcome)
    with transaction.atomic(durable=True):
        reconcile_psp_lock(run.psp)  # a late heal of this PSP (reheal.py) commits first, or waits
        # still this import's run (not taken over after a pause past the busy window): held until
        # the commit, so a takeover waits and then finds it done
        mine = ReconciliationRun.objects.select_for_update().filter(pk=run.pk, attempt=run.attempt)
        if not mine.exclude(status__in=(ReconRunStatus.DONE, ReconRunStatus.FAILED)).exists():
            raise RunTakenOverError(f"reconciliation {run.id} was taken over by another import; this import stops")
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":  # hash anti-joins over a day of captures: in memory
                cursor.execute(f"SET LOCAL work_mem = '{MATCH_WORK_MEM}'")
                cursor.execute("SET LOCAL jit = off")
            duplicates = ReconOutcome.DUPLICATE in by_outcome
            for sql, params in _discrepancies_sql(run, unmatched=unmatched, duplicates=duplicates):
                cursor.execute(sql, params)
        # what an earlier report lacked and this one settled: its "missing at PSP" closes itself
        resolved = discrepancies_settled_resolve(run_id=run.id, psp=run.psp) if settled else 0
        missing_at_psp = run.discrepancies.filter(kind=ReconOutcome.MISSING_AT_PSP)
        missing_n = missing_at_psp.count()
        missing_sum = sum(missing_at_psp.values_list("payera_amount", flat=True))
        posting = time.perf_counter()
        # items finance had already cleared (written off, adjusted, settled as reported) that these
        # lines settle: the receivable credited only what is still owed (one indexed SELECT)
        recovered = lines_recover(psp=run.psp, where="l.run_id = %s", params=[run.id]) if settled else {}
        journals = _post_settlement(run, tally, recovered)
        seconds = {**seconds, "post": round(time.perf_counter() - posting, 3)}
        from reconciliation.selectors import receivable_check

        rows = sum(n for n, _ in by_outcome.values())
        # lines an earlier report had (the report sent again) count as that report's lines counted
        sent_again = _sent_again(run) if ReconOutcome.DUPLICATE in by_outcome else {}
        for outcome, per in sent_again.items():
            for n, gross, _, _ in per.values():
                dn, dgross = by_outcome[ReconOutcome.DUPLICATE]
                by_outcome[ReconOutcome.DUPLICATE] = (dn - n, dgross - gross)
                on, ogross = by_outcome.get(outcome, (0, 0))
                by_outcome[outcome] = (on + n, ogross + gross)
        counts = {k: by_outcome.get(k, (0, 0))[0] for k in DISCREPANCY_KINDS}
        counts[ReconOutcome.MISSING_AT_PSP] = missing_n
        sums = {k: by_outcome.get(k, (0, 0))[1] for k in ReconOutcome.values}
        sums[ReconOutcome.MISSING_AT_PSP] = missing_sum
        summary = {
            "rows": rows,
            "matched": by_outcome.get(ReconOutcome.MATCHED, (0, 0))[0],
            "discrepancies": counts,
            "sums": sums,
            "healed": healed,
            "resolved_missing_at_psp": resolved,
            # of the rows, those an earlier report had: {earlier outcome: {currency: gross}}
            "sent_again": sum(n for per in sent_again.values() for n, *_ in per.values()),
            "sent_again_gross": {o: {c: g for c, (_, g, *_) in per.items()} for o, per in sent_again.items()},
            # the same with count, gross, fee and net, for the outcome table's CSV (report_tables.py)
            "sent_again_lines": {o: {c: list(v) for c, v in per.items()} for o, per in sent_again.items()},
            "journals": journals,
            "settled": {c: settled[c] for c in sorted(settled)},
            # what the lines gave back to the accounts earlier clearings of their items debited
            "recovered": _recovered_by_currency(recovered),
            "parser": parser,  # postgresql: COPY parsed the file; python: the adapter's parser did
            "card_numbers_masked": masked,  # rows whose text cells held a card number (stored masked)
        }
        # the receivable check counts the settled gross of every finished run: this one first
        ReconciliationRun.objects.filter(pk=run.pk).update(summary=summary, status=ReconRunStatus.DONE)
        summary["receivable"] = receivable_check(psp=run.psp)
        summary["seconds"] = {
            **seconds, "discrepancies_and_check": round(time.perf_counter() - started - seconds["post"], 3)
        }
        ReconciliationRun.objects.filter(pk=run.pk).update(
            summary=summary, status=ReconRunStatus.DONE, finished_at=timezone.now(), progress_at=timezone.now()
        )
    return summary


def _recovered_by_currency(recovered: dict[str, dict[tuple[str, str], int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for per in recovered.values():
        for (_, currency), amount in per.items():
            out[currency] = out.get(currency, 0) + amount
    return {c: out[c] for c in sorted(out)}


def pull_deadline() -> float:
    """How long one pull may go on (seconds, setting RECONCILIATION_PULL_DEADLINE_SECONDS, default
    2,700): safely under the broker's visibility timeout (3,600 s; reconciliation.E003), past which
    the broker would deliver the pull's task again and a second pull would run beside the first."""
    from django.conf import settings

    return float(getattr(settings, "RECONCILIATION_PULL_DEADLINE_SECONDS", 2700.0))


class PullDeadlineError(RuntimeError):
    """The pull reached its deadline (pull_deadline()) while it waited for a busy import: the day is
    left for the next pull (nothing of it imported, so no finished run covers it)."""


def reconcile_pull(*, day: dt.date | None = None, psps: Iterable[str] | None = None) -> dict[str, ReconcileResult]:
    """The scheduled pull: fetch each PSP's report and import it. With `day`, that day's report;
    without (Celery beat), yesterday's (UTC) and every earlier day of the catch-up window
    (`pull_days`) that no finished run of that PSP covers, or whose pulled file has not imported: a
    day whose pull could not reach the PSP, whose report was refused or whose import failed (also
    when another file of the day covers it) is pulled again by the next nights, oldest first (a
    file imported before changes nothing). Each PSP and day on its own: a failure is
    logged (a failed import also leaves its run marked failed, with the error) and the others are
    pulled all the same. Returns the PSPs imported (each with its latest day's result).

    The whole pull has a deadline (pull_deadline(), under the broker's visibility timeout): once
    it has passed, no further day is fetched or imported, a wait for a busy import stops, and the
    pull returns; the days it left are not imported, so no finished run covers them and the next
    pull fetches them (an import already running when the deadline passes runs to its end)."""
    from psp_adapters.errors import PspError

    deadline = time.monotonic() + pull_deadline()
    yesterday = timezone.now().astimezone(dt.UTC).date() - dt.timedelta(days=1)
    out: dict[str, ReconcileResult] = {}
    left: list[str] = []
    for psp in psps or connector_names():
        for when in [day] if day else pull_days(psp=psp, yesterday=yesterday):
            if time.monotonic() >= deadline:
                left.append(f"{psp} {when}")
                continue
            try:
                with outside_transaction():
                    raw = get_adapter(psp).fetch_settlement_report(when)
            except (PspError, NotImplementedError) as exc:
                logger.warning("settlement report of %s for %s not fetched: %s", psp, when, exc)
                continue
            failed_before = _pull_failures(psp, when)  # an import may take the failed run over and drop it
            try:
                out[psp] = _pull_import(psp=psp, raw=raw, when=when, deadline=deadline)
                if not out[psp].created:  # imported before (finance's upload of the PSP's file): the day's
                    _pull_found_imported(psp=psp, raw=raw, when=when)  # own file is imported, as if pulled
            except PullDeadlineError as exc:
                left.append(f"{psp} {when}")
                _pull_left(psp=psp, raw=raw, when=when, reason=str(exc))
            except SettlementRunBusyError as exc:  # still busy after the whole wait
                logger.error("settlement report of %s for %s not imported: %s", psp, when, _first_line(exc))
                # the import waited for, once done, covers the day: leave it due (review 16)
                _pull_left(psp=psp, raw=raw, when=when, reason=exc.message)
            except Exception as exc:  # noqa: BLE001  (one PSP's failure never stops the others' pull)
                known = isinstance(exc, SettlementFileInvalidError)
                logger.error("settlement report of %s for %s not imported: %s", psp, when, _first_line(exc),
                             exc_info=not known)  # fmt: skip
                try:  # the day stays due (also when another file of it is imported), and is counted
                    _pull_failed(psp=psp, raw=raw, when=when, failed_before=failed_before,
                                 reason=("refused: " if known else "failed: ") + _first_line(exc))  # fmt: skip
                except Exception:  # noqa: BLE001  (best effort: the pull goes on with the others)
                    logger.exception("settlement report of %s for %s: its failure could not be recorded", psp, when)
    if left:
        logger.warning("settlement report pull stopped at its deadline (%g s); left for the next pull: %s",
                       pull_deadline(), ", ".join(left))  # fmt: skip
    return out


def _pull_import(*, psp: str, raw: bytes, when: dt.date, deadline: float) -> ReconcileResult:
    """The pull's import of one PSP's day. An import of the same file or of another file of that
    period running (settlement_run_busy: the admin upload or the command at the same time, e.g. a
    PSP's second file of the day), or one whose lines hold rows of this file, is waited for for up
    to RECONCILIATION_PULL_BUSY_WAIT_SECONDS (default: the busy window, after which a run that
    stopped progressing is taken over) and never past the pull's `deadline` (PullDeadlineError):
    the pulled file imports once it has finished. Giving up was not enough: the other import, once
    done, covers the day, so no later night would pull this file again.

    While waiting, every RECONCILIATION_PULL_BUSY_POLL_SECONDS it only looks at the runs it waits
    for (`_still_busy`: one query on their status and heartbeat); the file is imported again (read,
    loaded and matched: the whole file) only once they have finished, failed or stopped
    progressing, not at every poll."""
    from django.conf import settings

    wait = float(getattr(settings, "RECONCILIATION_PULL_BUSY_WAIT_SECONDS", run_busy_for().total_seconds()))
    poll = max(0.01, float(getattr(settings, "RECONCILIATION_PULL_BUSY_POLL_SECONDS", 15.0)))
    waited = time.monotonic() + wait
    until = min(waited, deadline)
    while True:
        try:
            return reconcile_import(
                psp=psp, raw=raw, file_name=f"{psp}-{when.isoformat()}.csv", source="scheduled",
                actor="system:scheduler",
            )  # fmt: skip
        except SettlementRunBusyError as exc:
            busy = exc
        logger.info("settlement report of %s for %s waits for another import: %s", psp, when, busy.message)
        while True:
            if time.monotonic() + poll > until:
                if deadline < waited:
                    raise PullDeadlineError(f"the pull's deadline passed while waiting: {busy.message}") from busy
                raise busy
            time.sleep(poll)
            if not _still_busy(psp, busy.runs):
                break


@transaction.atomic(durable=True)
def _pull_left(*, psp: str, raw: bytes, when: dt.date, reason: str) -> None:
    """The pulled file of a day whose wait for a busy import the pull's deadline (or the wait's own
    limit, RECONCILIATION_PULL_BUSY_WAIT_SECONDS) cut is recorded
    as a `failed` run marked `pull_left` (or its failed run marked so), so that pull_days fetches
    the day again although the import it waited for (another file of the day: finance's refunds
    file) covers it once done. The next import of the file takes the failed run over at once; a
    run of the file still importing, or done, is left as it is."""
    reconcile_start_lock(psp)
    sha = hashlib.sha256(raw).hexdigest()
    run = ReconciliationRun.objects.select_for_update().filter(psp=psp, file_sha256=sha).first()
    now = timezone.now()
    summary = {"error": f"left for the next pull: {reason}"[:500], "pull_left": True}
    if run is None:
        ReconciliationRun.objects.create(
            psp=psp, file_sha256=sha, file_name=f"{psp}-{when.isoformat()}.csv", source="scheduled",
            created_by="system:scheduler", period_start=when, period_end=when, status=ReconRunStatus.FAILED,
            created_at=now, progress_at=now, finished_at=now, summary=summary,
        )  # fmt: skip
    elif run.status == ReconRunStatus.FAILED:
        ReconciliationRun.objects.filter(pk=run.pk).update(summary={**(run.summary or {}), **summary})


def pull_alert_after() -> int:
    """After how many nights a pulled file of a day that does not import is flagged for operations
    (setting RECONCILIATION_PULL_ALERT_AFTER_FAILURES, default 3: within the 7-day catch-up
    window, so that someone can still obtain the file while the pull would take it)."""
    from django.conf import settings

    return max(1, int(getattr(settings, "RECONCILIATION_PULL_ALERT_AFTER_FAILURES", 3)))


def _day_runs(psp: str, when: dt.date):
    return ReconciliationRun.objects.filter(psp=psp, period_start__lte=when).filter(
        Q(period_end__gte=when) | Q(period_end__isnull=True, period_start=when)
    )


def _pull_failures(psp: str, when: dt.date) -> int:
    """How many nights the pulled file of `when` failed so far (its day's failed runs)."""
    runs = _day_runs(psp, when).filter(status=ReconRunStatus.FAILED, summary__has_key="pull_failures")
    return max((int(r["pull_failures"]) for r in runs.values_list("summary", flat=True)), default=0)


@transaction.atomic(durable=True)
def _pull_failed(*, psp: str, raw: bytes, when: dt.date, reason: str, failed_before: int) -> None:
    """The pulled file of `when` did not import (refused at parse: malformed, cut short; or its
    import failed). Recorded on a `failed` run of the file marked `pull_left` (created for a refused
    file, which left no run; the period its day), so that pull_days fetches the day again each
    night although another file of the day covers it, until a scheduled import of the day is done.
    `pull_failures` counts the nights the day failed (`failed_before`: read before the import, which
    may take a failed run over; the PSP may send other bytes each night); from pull_alert_after()
    on the day is flagged for operations (`needs_operations`, an error in the log;
    `pull_failing_days`: dashboard and metric). A run of the file since done or importing is left
    alone."""
    reconcile_start_lock(psp)
    sha = hashlib.sha256(raw).hexdigest()
    run = ReconciliationRun.objects.select_for_update().filter(psp=psp, file_sha256=sha).first()
    if run is not None and run.status != ReconRunStatus.FAILED:
        return
    failures = 1 + max(failed_before, _pull_failures(psp, when))
    now = timezone.now()
    summary = {"error": f"pulled file of {when.isoformat()} {reason}"[:500], "pull_left": True,
               "pull_failures": failures, "pull_day": when.isoformat()}  # fmt: skip
    if failures >= pull_alert_after():
        summary["needs_operations"] = True
        logger.error("settlement report of %s for %s: its pulled file did not import for %s nights (%s); flagged "
                     "for operations (runbook reconciliation-pull-failing.md)", psp, when, failures, reason)
    if run is None:
        ReconciliationRun.objects.create(
            psp=psp, file_sha256=sha, file_name=f"{psp}-{when.isoformat()}.csv", source="scheduled",
            created_by="system:scheduler", period_start=when, period_end=when, status=ReconRunStatus.FAILED,
            created_at=now, progress_at=now, finished_at=now, summary=summary,
        )  # fmt: skip
    else:
        ReconciliationRun.objects.filter(pk=run.pk).update(summary={**(run.summary or {}), **summary})


@transaction.atomic(durable=True)
def _pull_found_imported(*, psp: str, raw: bytes, when: dt.date) -> None:
    """The pull got a file of `when` that was imported already (the import is idempotent on the
    bytes: no run of its own), e.g. by finance's upload of the file it downloaded from the PSP's
    dashboard (runbook reconciliation-pull-failing.md): the PSP's own file of the day is imported,
    as by a scheduled import. Recorded on that run (`summary["pulled_at"]`, `_pulled_at`), so the
    day is no longer due (pull_days) and no longer flagged (pull_failing_days): before, only a run
    created by the pull counted, so such a day stayed flagged for good (review r17a)."""
    sha = hashlib.sha256(raw).hexdigest()
    run = ReconciliationRun.objects.select_for_update().filter(psp=psp, file_sha256=sha,
                                                               status=ReconRunStatus.DONE).first()  # fmt: skip
    if run is not None:
        summary = {**(run.summary or {}), "pulled_at": timezone.now().isoformat(), "pull_day": when.isoformat()}
        ReconciliationRun.objects.filter(pk=run.pk).update(summary=summary)


def _pulled_at(source: str, created_at: dt.datetime, pulled_at: str | None) -> dt.datetime | None:
    """When a done run was known to hold the PSP's own file: its scheduled import, or the latest
    pull that found its file imported already (`_pull_found_imported`)."""
    times = [created_at] if source == "scheduled" else []
    if pulled_at:
        times.append(dt.datetime.fromisoformat(pulled_at))
    return max(times, default=None)


def pull_failing_days(*, psp: str | None = None) -> list[tuple[str, dt.date]]:
    """The (PSP, day) pairs flagged for operations: a pulled file of the day failed
    pull_alert_after() nights or more, and no scheduled import of the day is done since (nor has a
    pull since found the PSP's file of the day imported already: `_pulled_at`)."""
    flagged = ReconciliationRun.objects.filter(status=ReconRunStatus.FAILED, summary__needs_operations=True)
    if psp is not None:
        flagged = flagged.filter(psp=psp)
    out: set[tuple[str, dt.date]] = set()
    for name, day, at in flagged.values_list("psp", "summary__pull_day", "created_at"):
        when = dt.date.fromisoformat(day)
        done = _day_runs(name, when).filter(status=ReconRunStatus.DONE)
        later = (
            _pulled_at(*row) for row in done.values_list("source", "created_at", "summary__pulled_at")
        )
        if not any(t is not None and t > at for t in later):
            out.add((name, when))
    return sorted(out)


def _still_busy(psp: str, runs: tuple[str, ...]) -> bool:
    """Whether an import the pull waits for still runs: one of `runs` (any unfinished run of the
    PSP when not known) is in its import and progressed within run_busy_for(). One query on the
    run rows; a run that stopped progressing is not busy (the next import takes it over)."""
    live = ReconciliationRun.objects.filter(psp=psp, progress_at__gt=timezone.now() - run_busy_for()).exclude(
        status__in=(ReconRunStatus.DONE, ReconRunStatus.FAILED)
    )
    if runs:
        live = live.filter(pk__in=runs)
    return live.exists()


def pull_days(*, psp: str, yesterday: dt.date) -> list[dt.date]:
    """The days the scheduled pull fetches for `psp`, oldest first: yesterday, and each earlier day
    of the last RECONCILIATION_PULL_CATCH_UP_DAYS that no finished (`done`) run of that PSP covers
    (its period), from the first day reconciliation knows: the first report of any PSP (not the
    PSP's own first: a day this PSP missed before its first success would fall out for good, review
    14e); with no report at all, yesterday only (a new installation does not pull history). A day
    some done run covers is due too while a run the pull recorded for it (or marked pull_left) is
    not done (failed, crashed, left at the deadline), until a scheduled import of the day is done
    (or a pull found its file imported already: `_pulled_at`)."""
    from django.conf import settings

    window = max(1, int(getattr(settings, "RECONCILIATION_PULL_CATCH_UP_DAYS", 7)))
    done = ReconciliationRun.objects.filter(status=ReconRunStatus.DONE, period_start__isnull=False)
    first = done.order_by("period_start").values_list("period_start", flat=True).first() or yesterday
    start = max(first, yesterday - dt.timedelta(days=window - 1))
    mine = done.filter(psp=psp, period_end__gte=start, period_start__lte=yesterday)
    covered = [
        (a, b, _pulled_at(src, at, pulled))
        for a, b, src, at, pulled in mine.values_list(
            "period_start", "period_end", "source", "created_at", "summary__pulled_at"
        )
    ]
    # a day whose pulled file was never imported, though another file of the day (finance's refunds
    # file) covers it: the pull left it at its deadline (_pull_left), or its scheduled import failed
    # (a statement timeout, an error) or crashed (a worker killed: left in its phase). Due until a
    # later scheduled import of the day is done (review 16: a failed one left the day covered for good)
    left = list(
        ReconciliationRun.objects.filter(
            Q(source="scheduled") | Q(summary__pull_left=True),
            psp=psp, period_start__isnull=False, period_end__gte=start, period_start__lte=yesterday,
        ).exclude(status=ReconRunStatus.DONE).values_list("period_start", "period_end", "created_at")
    )  # fmt: skip
    days = [start + dt.timedelta(days=n) for n in range((yesterday - start).days + 1)]

    def pulled_again(d: dt.date, since: dt.datetime) -> bool:
        return any(a <= d <= (b or a) and at is not None and at > since for a, b, at in covered)

    def due(d: dt.date) -> bool:
        if not any(a <= d <= (b or a) for a, b, *_ in covered):
            return True
        return any(a <= d <= (b or a) and not pulled_again(d, at) for a, b, at in left)

    return [d for d in days if d == yesterday or due(d)]
