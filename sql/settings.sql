-- pg_infer's settings: defaults, contexts, validation, reserved prefix.
SHOW pg_infer.database;
SHOW pg_infer.device;
SHOW pg_infer.threads;
SHOW pg_infer.model_path;
SHOW pg_infer.model_dir;
SHOW pg_infer.default_model;

SELECT name, setting, context, vartype, min_val, max_val
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

-- pg_infer.default_model is a per-session choice.
SET pg_infer.default_model = 'stories260K';
SHOW pg_infer.default_model;
RESET pg_infer.default_model;
SHOW pg_infer.default_model;
