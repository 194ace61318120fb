-- pg_infer 0.1.0 -> 0.2.0.  Assembled from the files of ext/sql/0.2.0/ in
-- name order; a fresh CREATE EXTENSION pg_infer runs the frozen 0.1.0 script
-- and then this one, so an upgraded database and a new one are built by the
-- same statements.

\echo Use "ALTER EXTENSION pg_infer UPDATE TO '0.2.0'" to load this file. \quit
