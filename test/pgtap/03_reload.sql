-- Changing pg_infer.device and reloading makes the worker probe again; "cpu"
-- means the CUDA library is not used at all.  (ALTER SYSTEM cannot run in a
-- transaction block, so this file runs without one and undoes its change.)
SELECT plan(6);

CREATE FUNCTION pg_temp.wait_for_device_setting(wanted text, seconds integer) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    FOR attempt IN 1..seconds * 10 LOOP
        IF (SELECT device_setting = wanted AND worker_state = 'ready' FROM pg_infer_status) THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN false;
END
$$;

SELECT ok(pg_temp.wait_for_device_setting('auto', 30), 'the worker starts with pg_infer.device = auto');
CREATE TEMP TABLE before_reload AS SELECT worker_pid FROM pg_infer_status;

ALTER SYSTEM SET pg_infer.device = 'cpu';
SELECT pg_reload_conf();
SELECT ok(pg_temp.wait_for_device_setting('cpu', 30), 'after a reload the worker probes with cpu');
SELECT is((SELECT device FROM pg_infer_status), 'cpu', 'pg_infer.device = cpu computes on the CPU');
SELECT is((SELECT cuda_library FROM pg_infer_status), 'not loaded: pg_infer.device is cpu',
          'pg_infer.device = cpu says why CUDA is not used');
SELECT is((SELECT worker_pid FROM pg_infer_status), (SELECT worker_pid FROM before_reload),
          'a reload does not restart the worker');

ALTER SYSTEM RESET pg_infer.device;
SELECT pg_reload_conf();
SELECT ok(pg_temp.wait_for_device_setting('auto', 30), 'resetting the setting probes with auto again');

SELECT * FROM finish();
