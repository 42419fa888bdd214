#!/bin/sh
# The database roles of the served setup (docs/deploy.md, "Database roles"). Run once by the
# postgres image, as its superuser, on an empty data directory (compose.yaml mounts this directory
# at /docker-entrypoint-initdb.d). The superuser is for administration only:
# - payera_owner: owns the database (and so, on PostgreSQL 15+, its public schema); the migrate
#   service connects as it, migrates, then runs `manage.py db_grant_app_role payera_app`;
# - payera_app: the web, worker and scheduler. No superuser, owns nothing, cannot create roles
#   or databases; its privileges on tables and sequences come from db_grant_app_role only.
# - payera_ledger_writer: NOLOGIN, owns the ledger's posting functions (SECURITY DEFINER): the only
#   role that writes journals, entries and balances. payera_owner is a member (the migrations
#   replace the functions); payera_app never is (it gets EXECUTE on the functions).
set -eu
: "${POSTGRES_DB:?}" "${PAYERA_OWNER_DB_PASSWORD:?set PAYERA_OWNER_DB_PASSWORD}" "${PAYERA_APP_DB_PASSWORD:?set PAYERA_APP_DB_PASSWORD}"
psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname "$POSTGRES_DB" \
     -v db="$POSTGRES_DB" -v owner_pw="$PAYERA_OWNER_DB_PASSWORD" -v app_pw="$PAYERA_APP_DB_PASSWORD" <<'SQL'
CREATE ROLE payera_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'owner_pw';
CREATE ROLE payera_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT PASSWORD :'app_pw';
CREATE ROLE payera_ledger_writer NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS;
GRANT payera_ledger_writer TO payera_owner;
ALTER DATABASE :"db" OWNER TO payera_owner;
-- nobody but the owner connects or creates objects unless granted (db_grant_app_role grants CONNECT)
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SQL
