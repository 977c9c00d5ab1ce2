-- schema.sql -- the rotlab results database, schema version 2 (PRAGMA user_version and meta.schema_version).
-- Long format, meant to be read from the sqlite3 shell and pandas as well as by `rotlab report`.
-- db/results.lua applies this file to an empty database inside one transaction; the connection settings
-- (journal_mode=WAL, synchronous=NORMAL, foreign_keys=ON, busy timeout) are per connection and set there.
-- Times are UTC ISO 8601 text with milliseconds ('2024-05-01T12:00:00.123Z').
-- A new version of this file bumps user_version and results.lua gains the migration from the previous one.
-- Version 2 added run.pid (version 1 databases are migrated on open; read-only opens read them as they are).

PRAGMA user_version = 2;

CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('schema_version', '2');

-- One row per experiment script / study; runs hang off it.
CREATE TABLE experiment (
  id           INTEGER PRIMARY KEY,
  name         TEXT NOT NULL UNIQUE CHECK (name <> ''),
  created      TEXT NOT NULL,
  script       TEXT,
  code_version TEXT
);

-- One row per (experiment, config, seed, fold). run_key = FNV-1a 64 hex of the canonical JSON of
-- {experiment, config, seed, fold}: rerunning a grid finds its finished runs and skips them.
CREATE TABLE run (
  id            INTEGER PRIMARY KEY,
  experiment_id INTEGER NOT NULL REFERENCES experiment (id) ON DELETE CASCADE,
  run_key       TEXT NOT NULL UNIQUE,
  config_json   TEXT NOT NULL,            -- canonical JSON (keys sorted); seed and fold are not part of it
  seed          INTEGER,
  fold          INTEGER,
  status        TEXT NOT NULL CHECK (status IN ('RUNNING', 'FINISHED', 'FAILED', 'INTERRUPTED')),
  started       TEXT NOT NULL,
  finished      TEXT,
  wall_seconds  REAL,
  host          TEXT,
  code_version  TEXT,
  error         TEXT,
  heartbeat     TEXT,                     -- refreshed by every flush and while training: an old one means dead
  pid           INTEGER                   -- process id of the worker on `host` that claimed the run
);
CREATE INDEX run_by_experiment ON run (experiment_id, status);
CREATE INDEX run_by_config ON run (experiment_id, config_json);

-- One row per top-level config key; value_num is set when the value is a number (or a boolean: 0/1).
CREATE TABLE param (
  run_id     INTEGER NOT NULL REFERENCES run (id) ON DELETE CASCADE,
  name       TEXT NOT NULL,
  value_json TEXT NOT NULL,
  value_num  REAL,
  PRIMARY KEY (run_id, name)
);
CREATE INDEX param_by_name ON param (name, value_num);

-- Scalar metrics per step (epoch). SQLite stores a NaN REAL as NULL, so value_class keeps NaN, Inf and -Inf
-- distinguishable: value is NULL exactly when value_class is 'nan'.
CREATE TABLE metric (
  run_id      INTEGER NOT NULL REFERENCES run (id) ON DELETE CASCADE,
  step        INTEGER NOT NULL CHECK (step >= 0),
  split       TEXT NOT NULL CHECK (split <> ''),
  name        TEXT NOT NULL CHECK (name <> ''),
  value       REAL,
  value_class TEXT NOT NULL CHECK (value_class IN ('finite', 'nan', 'inf', '-inf')),
  CHECK ((value IS NULL) = (value_class = 'nan')),
  PRIMARY KEY (run_id, split, name, step)
);
CREATE INDEX metric_by_name ON metric (split, name);

-- Vector-valued traces (e.g. per-slice SWGG, slack, duals), one row per (run, key, step); vals is a JSON array
-- of n numbers with non-finite values as the strings "nan", "inf", "-inf".
CREATE TABLE trace (
  run_id INTEGER NOT NULL REFERENCES run (id) ON DELETE CASCADE,
  step   INTEGER NOT NULL CHECK (step >= 0),
  key    TEXT NOT NULL CHECK (key <> ''),
  n      INTEGER NOT NULL CHECK (n >= 0),
  vals   TEXT NOT NULL,
  PRIMARY KEY (run_id, key, step)
);

-- Files or blobs a run produced (plots, plans): path to a file, or the bytes in data.
CREATE TABLE artifact (
  id     INTEGER PRIMARY KEY,
  run_id INTEGER NOT NULL REFERENCES run (id) ON DELETE CASCADE,
  name   TEXT NOT NULL CHECK (name <> ''),
  kind   TEXT,
  path   TEXT,
  data   BLOB,
  UNIQUE (run_id, name)
);
