-- Demo tenant databases for the compose topology (docs/deployment.md). The postgres image runs
-- this once, on an empty data volume, connected to the registry database as the superuser.
--
-- Each demo project gets its own database owned by its own login role, so one tenant's
-- credentials open nothing of another's. The roles have no password, so nobody can log in as
-- them until an operator sets one: nothing secret lives in this file.

CREATE ROLE tenant_acme LOGIN;
CREATE DATABASE tenant_acme OWNER tenant_acme;
REVOKE ALL ON DATABASE tenant_acme FROM PUBLIC;

CREATE ROLE tenant_globex LOGIN;
CREATE DATABASE tenant_globex OWNER tenant_globex;
REVOKE ALL ON DATABASE tenant_globex FROM PUBLIC;

-- Tenant roles reach neither the registry (the current database) nor the maintenance database.
REVOKE ALL ON DATABASE :"DBNAME" FROM PUBLIC;
REVOKE ALL ON DATABASE postgres FROM PUBLIC;
