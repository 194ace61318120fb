-- pg_infer's settings: defaults, contexts, validation, reserved prefix.
SHOW pg_infer.database;
SHOW pg_infer.device;
SHOW pg_infer.threads;
-- test/server.conf points these at the test's copy of models/ (@MODELS@)
SELECT regexp_replace(current_setting('pg_infer.model_path'), '^/.*/models/', '@MODELS@/') AS model_path,
       regexp_replace(current_setting('pg_infer.model_dir'), '^/.*/models$', '@MODELS@') AS model_dir;
SHOW pg_infer.default_model;

SELECT name, regexp_replace(setting, '^/.*/models', '@MODELS@') AS setting, context, vartype,
       min_val, max_val
  FROM pg_settings
 WHERE name LIKE 'pg_infer.%'
 ORDER BY name;

-- The prefix is reserved: a misspelt setting is an error, not a silent
-- placeholder.
SET pg_infer.nonexistent = 1;
SET pg_infer.devce = 'cpu';

-- Settings the worker reads cannot change in a session.
SET pg_infer.database = 'other';
SET pg_infer.device = 'cpu';
SET pg_infer.threads = 4;

-- Values are checked when they are set.
ALTER SYSTEM SET pg_infer.device = 'gpu';
ALTER SYSTEM SET pg_infer.device = 'cuda:';
ALTER SYSTEM SET pg_infer.device = 'cuda:x1';
ALTER SYSTEM SET pg_infer.threads = -1;
-- A valid device is accepted (and taken back; no reload happens here).
ALTER SYSTEM SET pg_infer.device = 'cuda:1';
ALTER SYSTEM RESET pg_infer.device;
-- pg_infer.devices: '', auto, or a list of cuda:N, cpu:N, cpu (restart).
SET pg_infer.devices = 'cpu,cpu';
ALTER SYSTEM SET pg_infer.devices = 'gpu';
ALTER SYSTEM SET pg_infer.devices = 'cpu,cpu:0';
ALTER SYSTEM SET pg_infer.devices = 'auto,cuda:0';
ALTER SYSTEM SET pg_infer.devices = 'cuda:0,cuda:1,cuda:2,cuda:3,cuda:4,cuda:5,cuda:6,cuda:7,cpu';
ALTER SYSTEM SET pg_infer.devices = ' cuda:0 , cuda:1 ';
ALTER SYSTEM SET pg_infer.devices = 'cpu,cpu';
ALTER SYSTEM SET pg_infer.devices = 'auto';
ALTER SYSTEM RESET pg_infer.devices;

-- Serving settings: per session, or checked on reload.
SET pg_infer.queue_timeout = -1;
SET pg_infer.queue_timeout = '5s';
SHOW pg_infer.queue_timeout;
RESET pg_infer.queue_timeout;
SET pg_infer.tag = 'tenant-a';
SHOW pg_infer.tag;
RESET pg_infer.tag;
SET pg_infer.max_sequences = 8;
ALTER SYSTEM SET pg_infer.max_sequences = 0;
SHOW pg_infer.usage_retention;

-- pg_infer.default_model is a per-session choice.
SET pg_infer.default_model = 'stories260K';
SHOW pg_infer.default_model;
RESET pg_infer.default_model;
SHOW pg_infer.default_model;
