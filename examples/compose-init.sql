-- docker-compose: a `billing` database beside the state database, for trying the importer out.
-- Point SOURCE_DATABASE_URL at your real billing database instead.
CREATE DATABASE billing;
