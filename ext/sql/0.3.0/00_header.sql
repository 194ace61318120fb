-- pg_infer 0.2.0 -> 0.3.0.  Assembled from the files of ext/sql/0.3.0/ in
-- name order.  0.2.0 has shipped: its step (ext/sql/0.2.0/) is frozen like
-- 0.1.0's, and every change since is a file here.

\echo Use "ALTER EXTENSION pg_infer UPDATE TO '0.3.0'" to load this file. \quit
