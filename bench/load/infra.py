"""The load run's own services: a private PostgreSQL cluster and redis-server on free loopback
ports (restarting them never touches the machine's shared ones), and the Payera processes
(gunicorn, Celery workers, beat, the two sandbox PSPs) as subprocesses we started and stop by pid."""

from __future__ import annotations

import glob
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
BIN = Path(PY).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def _as_postgres(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:  # initdb and pg_ctl refuse to run as root
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


@dataclass
class PrivatePostgres:
    """`initdb` into a temp dir; trust auth for `postgres` on 127.0.0.1:<port>."""

    base: Path
    port: int = field(default_factory=free_port)
    fast: bool = False  # fsync off: for the short CI run (no pg-restart there), never for the real one

    def __post_init__(self) -> None:
        versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
        if not versions:
            raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
        self.bin = Path(versions[-1])
        self.data = self.base / "pgdata"
        self.sock = self.base / "pgsock"
        self.log = self.base / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/payera_load"

    def init(self) -> None:
        os.chmod(self.base, 0o755)
        self.data.mkdir()
        self.sock.mkdir()
        self.log.touch()
        if os.geteuid() == 0:
            for path in (self.data, self.sock, self.log):
                shutil.chown(path, "postgres", "postgres")
        _as_postgres([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                      "-E", "UTF8", "--no-locale"])
        self.start()
        _as_postgres([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                      "payera_load"])

    def _ctl(self, action: str, *extra: str) -> None:
        opts = f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c max_connections=200"
        if self.fast:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        _as_postgres([str(self.bin / "pg_ctl"), action, "-D", str(self.data), "-l", str(self.log), "-w",
                      "-t", "60", "-o", opts, *extra])

    def start(self) -> None:
        self._ctl("start")

    def restart(self) -> None:
        """An immediate restart: every session is cut (as in a crash), then WAL recovery."""
        self._ctl("restart", "-m", "immediate")

    def stop(self) -> None:
        try:
            self._ctl("stop", "-m", "fast")
        except subprocess.CalledProcessError:
            pass


@dataclass
class PrivateRedis:
    base: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", str(self.base)]
        with open(self.base / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen

    def kill(self, sig: int = signal.SIGTERM, wait: float = 15.0) -> None:
        if self.popen.poll() is not None:
            return
        os.killpg(self.popen.pid, sig)  # its own session: the process and its children
        try:
            self.popen.wait(wait)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)


def spawn(name: str, cmd: list[str], env: dict, logdir: Path) -> Proc:
    with open(logdir / f"{name}.log", "ab") as log:
        popen = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return Proc(name, popen)


def start_sandbox(psp: str, env: dict, data_dir: Path, webhook_url: str, logdir: Path) -> tuple[Proc, str]:
    from psp_adapters.sandbox import sandbox_command

    cmd = sandbox_command(psp, port=0, data_dir=data_dir, webhook_url=webhook_url, hold_seconds=3.0)
    cmd += ["--processing-delay", "0.05", "--webhook-backoff", "0.3", "--exit-with-parent"]
    with open(logdir / f"{psp}.log", "ab") as log:
        popen = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
    ready, _, _ = select.select([popen.stdout], [], [], 30)
    line = popen.stdout.readline().decode() if ready else ""
    if "listening on" not in line:
        popen.kill()
        raise RuntimeError(f"{psp} sandbox did not start: {line!r}")
    return Proc(psp, popen), line.strip().rsplit(" ", 1)[-1]


def start_worker(n: int, env: dict, logdir: Path) -> Proc:
    cmd = [PY, "-m", "celery", "-A", "payera", "worker", "--pool=threads", "--concurrency=4", "-n", f"load{n}@%h",
           "--without-gossip", "--without-mingle", "--loglevel=WARNING"]
    return spawn(f"worker{n}", cmd, env, logdir)


def start_beat(env: dict, logdir: Path) -> Proc:
    cmd = [PY, "-m", "celery", "-A", "payera", "beat", "-s", str(logdir / "beat-schedule"), "--loglevel=WARNING"]
    return spawn("beat", cmd, env, logdir)


def start_gunicorn(port: int, env: dict, logdir: Path, workers: int = 3, threads: int = 4) -> Proc:
    cmd = [str(BIN / "gunicorn"), "payera.wsgi:application", "-b", f"127.0.0.1:{port}", "-w", str(workers),
           "-k", "gthread", "--threads", str(threads), "--timeout", "60", "--log-level", "warning"]
    return spawn("gunicorn", cmd, env, logdir)


def wait_healthy(proc: Proc, port: int, logdir: Path) -> Proc:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.popen.poll() is not None:
            raise RuntimeError(f"gunicorn exited; see {logdir}/gunicorn.log")
        time.sleep(0.2)
    raise RuntimeError("gunicorn did not answer /healthz")
