"""Imports held half-way in a thread of their own, for the concurrency tests of reconciliation
(PostgreSQL: each thread has its own connection, closed when it ends)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import NamedTuple

import pytest
from django.db import connections

from reconciliation.models import ReconciliationRun
from reconciliation.services import reconcile, reconcile_import


def start_thread(target: Callable[[], object], errors: list[BaseException]) -> threading.Thread:
    """`target` run in a started thread: what it raises is appended to `errors` (the test reports
    it), and the thread's database connections are closed when it ends."""

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


class HeldImport(NamedTuple):
    thread: threading.Thread
    release: threading.Event
    errors: list[BaseException]

    def finish(self, *others: threading.Thread) -> None:
        """Release the held import and wait for it and for `others` (threads it kept waiting)."""
        self.release.set()
        for thread in (self.thread, *others):
            thread.join(60)


def import_held_at_finish(monkeypatch, raw: bytes, *, fail: str = "", psp: str = "alpha", **kwargs) -> HeldImport:
    """An import of `raw` (a thread) that runs until its finish (lines loaded, matched and
    committed, run in `posting`) and waits there until `release` is set; then it fails with
    RuntimeError(`fail`) when given, else finishes. Only that thread's import is held: imports
    of the test's own thread, or of another thread, run through. Returns once it is held."""
    return held_at_finish(monkeypatch, lambda: reconcile_import(psp=psp, raw=raw, **kwargs), fail=fail)


def held_at_finish(monkeypatch, target: Callable[[], object], *, fail: str = "") -> HeldImport:
    """`target` (a thread; e.g. an admin upload through the test client) whose import runs until
    its finish and waits there as `import_held_at_finish`'s does. Returns once it is held."""
    entered, release = threading.Event(), threading.Event()
    original = reconcile._finish
    held: list[threading.Thread] = []

    def finish(run, *args, **kw):
        if held and threading.current_thread() is held[0] and not release.is_set():
            entered.set()
            release.wait(60)
            if fail:
                raise RuntimeError(fail)
        return original(run, *args, **kw)

    monkeypatch.setattr(reconcile, "_finish", finish)
    errors: list[BaseException] = []
    ready = threading.Event()

    def run() -> None:
        ready.wait(60)
        target()

    held.append(start_thread(run, errors))
    ready.set()
    assert entered.wait(60), f"the held import never reached its finish: {errors}"
    return HeldImport(held[0], release, errors)


def import_killed_while_loading(monkeypatch, raw: bytes, *, psp: str = "alpha") -> ReconciliationRun:
    """An import whose process dies while loading (nothing marks its run failed): its run, left
    in `loading` (as a killed worker leaves it)."""

    def killed(phase: str, done: int, total: int) -> None:
        if phase == "loading":
            raise KeyboardInterrupt  # the process dies while loading ...

    with monkeypatch.context() as m:
        m.setattr(reconcile, "_run_fail", lambda run, exc: None)  # ... so nothing marks the run failed
        with pytest.raises(KeyboardInterrupt):
            reconcile_import(psp=psp, raw=raw, progress=killed)
    run = ReconciliationRun.objects.get(psp=psp, file_sha256=hashlib.sha256(raw).hexdigest())
    assert run.status == "loading"
    return run
