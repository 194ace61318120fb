-- A worker that is terminated is started again by the postmaster, and what
-- it published is cleared when it exits.
SELECT plan(4);

CREATE FUNCTION pg_temp.wait_for_new_worker(old_pid integer, seconds integer) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    FOR attempt IN 1..seconds * 10 LOOP
        IF (SELECT worker_state = 'ready' AND worker_pid <> old_pid FROM pg_infer_status) THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN false;
END
$$;

CREATE TEMP TABLE before_restart AS SELECT worker_pid, worker_starts FROM pg_infer_status;

SELECT ok(pg_terminate_backend((SELECT worker_pid FROM before_restart), 10000),
          'the worker exits on SIGTERM');
SELECT ok((SELECT worker_pid IS DISTINCT FROM (SELECT worker_pid FROM before_restart) FROM pg_infer_status),
          'the exited worker''s pid is no longer published');
SELECT ok(pg_temp.wait_for_new_worker((SELECT worker_pid FROM before_restart), 30),
          'a new worker is ready within 30 seconds');
SELECT is((SELECT worker_starts FROM pg_infer_status),
          (SELECT worker_starts + 1 FROM before_restart), 'the start count went up by one');

SELECT * FROM finish();
