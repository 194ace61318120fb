
-- ======================================================================
-- Roles, used by the serving functions (20_serving.sql) and the books
-- (5x_books_*.sql).
-- ======================================================================

-- ---------------------------------------------------------------- roles
-- PostgreSQL reserves role names beginning with "pg_" (CREATE ROLE
-- pg_infer_user fails with "role name is reserved"), so the roles are
-- pginfer_*.  Roles are cluster-wide and outlive DROP EXTENSION: create them
-- only where absent.
--   pginfer_user     may call the inference functions; sees its own usage
--   pginfer_analyst  reads all usage and the analyst views
--   pginfer_admin    models, prices, budgets (and everything an analyst reads)
DO $roles$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['pginfer_user', 'pginfer_analyst', 'pginfer_admin'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = role_name) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', role_name);
        END IF;
    END LOOP;
    IF NOT pg_catalog.pg_has_role('pginfer_admin', 'pginfer_analyst', 'MEMBER') THEN
        GRANT pginfer_analyst TO pginfer_admin;
    END IF;
END
$roles$;
