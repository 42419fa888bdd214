"""`DJANGO_ENV=production` passes `check --deploy` cleanly when configured as documented, and
refuses to start with DEBUG on, the default secret key or a wildcard host."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from tests.fixtures.db_roles import role_database_url

ROOT = Path(__file__).resolve().parents[2]


def production_env(**overrides) -> dict:
    env = dict(os.environ)
    env.pop("DEBUG", None)
    env.update(
        DJANGO_ENV="production",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="pay.example.com",
        DATABASE_URL=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"),
        REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        SECRETS_BACKEND="vault",
        VAULT_ADDR="https://vault.internal:8200",
        VAULT_ROLE_ID="payera-web",
        VAULT_SECRET_ID="set-by-the-deployment",
        DJANGO_SETTINGS_MODULE="payera.settings.base",
    )
    env.update(overrides)
    return env


def manage(*args, env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_is_clean_with_documented_production_variables(runtime_role):
    # as documented: the runtime database role (docs/deploy.md, "Database roles")
    env = production_env(DATABASE_URL=role_database_url(runtime_role))
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


def test_check_deploy_refuses_a_superuser_database_role(transactional_db):
    result = manage("check", "--deploy", "--fail-level", "ERROR", env=production_env(DATABASE_URL=role_database_url(
        connection.settings_dict["USER"])))
    assert result.returncode != 0
    assert "ledger.E101" in result.stderr and "superuser" in result.stderr


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"DEBUG": "true"}, "DEBUG must be off"),
        ({"SECRET_KEY": "payera-insecure-dev-key-change-me"}, "SECRET_KEY"),
        ({"ALLOWED_HOSTS": "*"}, "ALLOWED_HOSTS"),
        ({"ALLOWED_HOSTS": "pay.example.com,*.example.com"}, "ALLOWED_HOSTS"),
        ({"SECRETS_BACKEND": "memory"}, "SECRETS_BACKEND"),
    ],
)
def test_production_refuses_unsafe_configuration(overrides, reason):
    result = manage("check", env=production_env(**overrides))
    assert result.returncode != 0
    assert "Refusing to start in production" in result.stderr
    assert reason in result.stderr
