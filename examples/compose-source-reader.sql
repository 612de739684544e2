-- docker-compose: the role the importer reads the `billing` database with (SOURCE_DATABASE_URL).
-- It can read and nothing else: SELECT on the tables, no CREATE anywhere, and every transaction it
-- opens is read-only by default. Use the same statements for your real billing database (README,
-- Security). Run by the postgres image's entrypoint, through psql, once, when the volume is created.

\getenv reader_password SOURCE_READER_PASSWORD
CREATE ROLE growpanel_reader LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD :'reader_password';
-- A second line of defence behind the importer's own READ ONLY transactions.
ALTER ROLE growpanel_reader SET default_transaction_read_only = on;

\connect billing
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
REVOKE TEMPORARY ON DATABASE billing FROM PUBLIC;
GRANT CONNECT ON DATABASE billing TO growpanel_reader;
GRANT USAGE ON SCHEMA public TO growpanel_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO growpanel_reader;
-- Tables and schemas the owner (backfill) creates later are readable too, and only readable.
ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO growpanel_reader;
ALTER DEFAULT PRIVILEGES GRANT USAGE ON SCHEMAS TO growpanel_reader;
