#!/bin/sh
# Run once by the postgres image's entrypoint, on an empty data directory (mounted at /docker-entrypoint-initdb.d,
# executable), as the superuser over the Unix socket: the application role alerting_service, which owns the
# database alerting and nothing else, may not create databases or roles, and is no superuser. Its password is
# ALERTING_SERVICE_PASSWORD (the Secret `postgres`, key alerting-password); the URL of the Secret `gomon-alerting`
# carries the same one. PUBLIC keeps no CONNECT or TEMP on the other databases and no CREATE on any public schema.
set -eu
: "${ALERTING_SERVICE_PASSWORD:?ALERTING_SERVICE_PASSWORD must be set}"
psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password --username "${POSTGRES_USER:-postgres}" --dbname postgres <<'SQL'
\getenv password ALERTING_SERVICE_PASSWORD
SET password_encryption = 'scram-sha-256';
CREATE ROLE alerting_service LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD :'password';
\unset password
CREATE DATABASE alerting OWNER alerting_service;
REVOKE ALL ON DATABASE postgres, template1 FROM PUBLIC;
REVOKE ALL ON DATABASE alerting FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
\connect template1
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
\connect alerting
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SQL
