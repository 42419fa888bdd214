"""The deploy files set only variables the settings read, and .env.example lists them all."""

import os
import re
from pathlib import Path

from payera import env as env_module

ROOT = Path(__file__).resolve().parents[2]


def declared_variables() -> set[str]:
    declared = set(env_module.env.scheme)
    # Variables read directly with a default in settings (env.str("X", default=...) and the like).
    for path in (ROOT / "payera" / "settings").glob("*.py"):
        declared |= set(re.findall(r"env\.\w+\(\s*\"([A-Z][A-Z0-9_]+)\"", path.read_text()))
        declared |= set(re.findall(r"os\.environ\.setdefault\(\s*\"([A-Z][A-Z0-9_]+)\"", path.read_text()))
    return declared


def compose_payera_variables() -> set[str]:
    text = (ROOT / "compose.yaml").read_text()
    block = text.split("x-payera-env: &payera-env", 1)[1].split("\nservices:", 1)[0]
    return set(re.findall(r"^\s{2}([A-Z][A-Z0-9_]+):", block, re.MULTILINE))


def test_compose_sets_only_variables_the_settings_read():
    compose = compose_payera_variables()
    assert {"DATABASE_URL", "REDIS_URL", "SECRETS_BACKEND", "VAULT_ADDR"} <= compose
    unknown = compose - declared_variables()
    assert not unknown, f"compose.yaml sets variables no setting reads: {sorted(unknown)}"


def test_env_example_lists_every_declared_variable():
    example = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    missing = (declared_variables() - {"DJANGO_SETTINGS_MODULE"}) - example
    assert not missing, f".env.example misses: {sorted(missing)}"
    unknown = example - declared_variables()
    assert not unknown, f".env.example lists variables no setting reads: {sorted(unknown)}"


def test_every_web_process_runs_gunicorn_with_the_one_settings_file(monkeypatch):
    """The image, `make run` and the payments benchmark start gunicorn with gunicorn.conf.py, so
    the benchmark's figures are the documented deployment's (docs/deploy.md)."""
    import runpy

    assert '"-c", "gunicorn.conf.py"' in (ROOT / "Dockerfile").read_text()
    run_all = (ROOT / "payera" / "core" / "management" / "commands" / "run_all.py").read_text()
    assert '"gunicorn.conf.py"' in run_all and '"--workers"' not in run_all and '"--threads"' not in run_all
    bench = (ROOT / "bench" / "payments" / "__main__.py").read_text()
    assert '"-c", str(ROOT / "gunicorn.conf.py")' in bench
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.delenv("WEB_THREADS", raising=False)
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert (conf["workers"], conf["threads"], conf["worker_class"]) == (os.cpu_count() or 1, 4, "gthread")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("WEB_THREADS", "16")
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert (conf["workers"], conf["threads"]) == (3, 16)


def test_compose_migrates_as_the_owner_and_serves_as_the_runtime_role():
    """docs/deploy.md "Database roles": the init script makes an owner and a runtime role (neither a
    superuser); migrate connects as the owner and grants; everything else as the runtime role."""
    import yaml

    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    for name in ("web", "worker", "scheduler"):
        assert "//payera_app:" in services[name]["environment"]["DATABASE_URL"], name
    migrate = services["migrate"]
    assert "//payera_owner:" in migrate["environment"]["DATABASE_URL"]
    command = " ".join(migrate["command"])
    assert "manage.py migrate" in command and "manage.py db_grant_app_role payera_app" in command
    assert services["web"]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    postgres = services["postgres"]
    assert "./scripts/postgres-init:/docker-entrypoint-initdb.d:ro" in postgres["volumes"]
    init = (ROOT / "scripts" / "postgres-init" / "10-payera-roles.sh").read_text()
    assert "CREATE ROLE payera_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE" in init
    assert "CREATE ROLE payera_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE" in init
    assert "ALTER DATABASE :\"db\" OWNER TO payera_owner" in init
    # the posting functions' owner (ledger migration 0010 needs it, and payera_owner in it)
    assert "CREATE ROLE payera_ledger_writer NOLOGIN NOSUPERUSER" in init
    assert "GRANT payera_ledger_writer TO payera_owner;" in init
    assert "payera_app" not in init.split("GRANT payera_ledger_writer TO", 1)[1].split(";", 1)[0]
