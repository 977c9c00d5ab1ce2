#!/usr/bin/env rotlab-double
-- The issue's "done when": a 100-run grid runs with --jobs 2, survives two kills (SIGKILL of launcher and
-- workers), resumes to completion; the same grid split over 4 shards merges into an identical report. Then
-- `rotlab db merge` is idempotent (merging twice changes nothing, shard order does not matter), replaces a run only
-- by a better status, and `rotlab report` / `rotlab query` work on the merged DB. Wall times are printed.
local rl = require "rotlab"
local report = require "rotlab.report"
local json = require "rotlab.json"
local u = dofile((ROTLAB_ROOT or ".") .. "/tests/fixtures/gridutil.lua")
local t = require("rotlab.tap")()

local dir = u.tmpdir()
local GRID = { "seeds=5", "epochs=3", "ms=20" } -- 20 configurations x 5 seeds = 100 runs
local KILL_AFTER_RUNS = 5        -- each kill comes once this many more runs have FINISHED
local KILL_TIMEOUT_SECONDS = 120 -- or after this long (the check below then fails)
local function grid_args(extra)
  local a = { "grid", u.tiny }
  for _, x in ipairs(extra) do a[#a + 1] = x end
  for _, x in ipairs(GRID) do a[#a + 1] = x end
  return a
end

-- every row of every table, keyed by run_key instead of row ids (so two DBs with other ids compare equal)
local function dump(db)
  local c = rl.sqlite.open(db, { readonly = true })
  local out = {}
  local function add(sql)
    for row in c:rows(sql) do out[#out + 1] = json.encode(row) end
  end
  add("SELECT name, created, script, code_version FROM experiment ORDER BY name")
  add("SELECT e.name AS experiment, r.run_key, r.config_json, r.seed, r.fold, r.status, r.started, r.finished, " ..
    "r.wall_seconds, r.host, r.code_version, r.error, r.heartbeat, r.pid FROM run r JOIN experiment e " ..
    "ON e.id = r.experiment_id ORDER BY r.run_key")
  add("SELECT r.run_key, p.name, p.value_json, p.value_num FROM param p JOIN run r ON r.id = p.run_id " ..
    "ORDER BY r.run_key, p.name")
  add("SELECT r.run_key, m.step, m.split, m.name, m.value, m.value_class FROM metric m JOIN run r ON r.id = m.run_id " ..
    "ORDER BY r.run_key, m.split, m.name, m.step")
  add("SELECT r.run_key, x.step, x.key, x.n, x.vals FROM trace x JOIN run r ON r.id = x.run_id " ..
    "ORDER BY r.run_key, x.key, x.step")
  add("SELECT r.run_key, a.name, a.kind, a.path, a.data FROM artifact a JOIN run r ON r.id = a.run_id " ..
    "ORDER BY r.run_key, a.name")
  c:close()
  return table.concat(out, "\n")
end

-- every row as stored, ids included (a second merge must not change a byte of it)
local function raw_dump(db)
  local c = rl.sqlite.open(db, { readonly = true })
  local out = {}
  for _, tname in ipairs { "experiment", "run", "param", "metric", "trace", "artifact", "meta" } do
    local cols = {}
    for col in c:rows("SELECT name FROM pragma_table_info(?)", tname) do cols[#cols + 1] = col.name end
    for row in c:rows("SELECT * FROM " .. tname .. " ORDER BY " .. table.concat(cols, ", ")) do
      out[#out + 1] = tname .. json.encode(row)
    end
  end
  c:close()
  return table.concat(out, "\n")
end

-- the text report without its wall-time column (wall times differ between any two executions)
local function report_text(db)
  local out, code = u.rotlab({ "report", db })
  local head = out:match("^[^\n]*")
  local cut = head:find("wall s", 1, true)
  local lines = {}
  for line in out:gmatch("[^\n]+") do lines[#lines + 1] = (line:sub(1, cut and cut - 1 or #line):gsub("%s+$", "")) end
  return table.concat(lines, "\n"), code
end

-- a == b for two dumps; the diagnostic shows the first line that differs
local function same_dump(a, b, name)
  if a == b then return t:ok(true, name) end
  local la, lb = {}, {}
  for l in a:gmatch("[^\n]+") do la[#la + 1] = l end
  for l in b:gmatch("[^\n]+") do lb[#lb + 1] = l end
  for i = 1, math.max(#la, #lb) do
    if la[i] ~= lb[i] then
      return t:ok(false, name, ("line %d:\n got:      %s\n expected: %s"):format(i, tostring(la[i]), tostring(lb[i])))
    end
  end
  return t:ok(false, name)
end

---------------------------------------------------------------------------------------------- 100 runs, --jobs 2, two kills

local one = dir .. "/one.db"
local t0 = rl.wall_time()
local at_kill = {}
for k = 1, 2 do
  local log = dir .. "/one.log"
  local pid = u.spawn_rotlab(grid_args{ "--jobs", "2", "db=" .. one }, { stdout = log, stderr = log })
  -- kill once a few more runs have finished (polling the DB, not a fixed delay: a loaded machine is slower)
  local want, deadline = (at_kill[k - 1] or 0) + KILL_AFTER_RUNS, rl.wall_time() + KILL_TIMEOUT_SECONDS
  while rl.wall_time() < deadline do
    rl.proc.sleep(0.02)
    local ok, n = pcall(u.scalar, one, "SELECT count(*) FROM run WHERE status = 'FINISHED'")
    if ok and n >= want then break end
  end
  rl.proc.kill(-pid, "KILL")
  local _, kind = rl.proc.wait(pid)
  at_kill[k] = u.scalar(one, "SELECT count(*) FROM run WHERE status = 'FINISHED'")
  t:ok(kind == "signal" and at_kill[k] > (at_kill[k - 1] or 0) and at_kill[k] < 100,
    ("kill %d (SIGKILL of launcher and workers) hit the grid mid-way: %d of 100 runs FINISHED"):format(k, at_kill[k]))
end
local out, code = u.rotlab(grid_args{ "--jobs", "2", "db=" .. one })
local wall_one = rl.wall_time() - t0
t:ok(code == 0 and out:find("100 FINISHED %(%d+ now, " .. at_kill[2] .. " before%), 0 FAILED, 0 left"),
  "the resumed grid completes all 100 runs", out)
t:is(u.scalar(one, "SELECT count(*) FROM run WHERE status = 'FINISHED'"), 100, "100 FINISHED rows")
t:is(u.scalar(one, "SELECT count(*) FROM metric"), 100 * 3 * 2, "no lost or doubled metric row")
t:diag(("100 runs, --jobs 2, killed twice (at %d and %d finished), resumed: %.1f s wall in all"):format(at_kill[1],
  at_kill[2], wall_one))

-- uninterrupted, for comparison
local ref = dir .. "/ref.db"
t0 = rl.wall_time()
out, code = u.rotlab(grid_args{ "--jobs", "2", "db=" .. ref })
local wall_ref = rl.wall_time() - t0
t:is(code, 0, "the same grid without kills", out)
t:diag(("the same 100 runs, --jobs 2, no kill: %.1f s wall"):format(wall_ref))

---------------------------------------------------------------------------------------------- 4 shards, merged

local shards, walls = {}, {}
for i = 1, 4 do
  t0 = rl.wall_time()
  out, code = u.rotlab(grid_args{ "--shard", i .. "/4", "--jobs", "2", "db=" .. dir .. "/sh.db" })
  walls[i] = ("%.1f"):format(rl.wall_time() - t0)
  shards[i] = dir .. ("/sh.shard%d-of-4.db"):format(i)
  t:ok(code == 0 and out:find(("shard %d/4: 25 of 100 runs%%): 25 FINISHED"):format(i)), ("shard %d/4: 25 runs"):format(i),
    out)
end
local merged = dir .. "/merged.db"
t0 = rl.wall_time()
out, code = u.rotlab({ "db", "merge", merged, table.unpack(shards) })
local wall_merge = rl.wall_time() - t0
t:ok(code == 0 and select(2, out:gsub("25 runs: 25 new, 0 replaced, 0 kept", "")) == 4, "merge: 4 x 25 new runs", out)
t:diag(("4 shards x 25 runs, --jobs 2 each, one after the other: %s s wall; merge: %.2f s"):format(
  table.concat(walls, " + "), wall_merge))
t:is(u.scalar(merged, "SELECT count(*) FROM run WHERE status = 'FINISHED'"), 100, "the merged DB has the 100 runs")
t:is(u.scalar(merged, "SELECT count(*) FROM metric"), 600, "and all their metrics")
t:is(u.scalar(merged, "SELECT count(*) FROM experiment"), 1, "one experiment (matched by name)")

local r_one, c1 = report_text(one)
local r_merged, c2 = report_text(merged)
local r_ref = report_text(ref)
t:ok(c1 == 0 and c2 == 0 and select(2, r_one:gsub("\n", "")) >= 21, "rotlab report works on both DBs", r_one)
t:is(r_merged, r_one, "the 4-shard merged report is identical to the killed-and-resumed one (wall column aside)")
t:is(r_ref, r_one, "and to the uninterrupted one")
local rows = report.table(merged)
local all5 = #rows == 20
for _, r in ipairs(rows) do all5 = all5 and r.n == 5 and r.n_metric == 5 end
t:ok(all5, "report.table on the merged DB: 20 configurations x 5 seeds")
local rows_one = report.table(one)
local same = #rows_one == #rows
for i = 1, math.min(#rows, #rows_one) do
  same = same and rows[i].config_json == rows_one[i].config_json and math.abs(rows[i].mean - rows_one[i].mean) <= 1e-12
    and math.abs(rows[i].std - rows_one[i].std) <= 1e-12
end
t:ok(same, "report.table rows agree to 1e-12 (configs, means, stds)")

out, code = u.rotlab({ "query", merged, "SELECT status, count(*) AS n FROM run GROUP BY status" })
t:ok(code == 0 and out:find("FINISHED%s+100"), "rotlab query on the merged DB", out)
out, code = u.rotlab({ "query", merged, "SELECT p.value_json AS pool, count(*) AS runs FROM param p " ..
  "WHERE p.name = 'pool' GROUP BY 1 ORDER BY 1", "--format", "csv" })
t:is(out, 'pool,runs\r\n"""max""",20\r\n"""mean""",20\r\n"""rotp""",60\r\n', "rotlab query --format csv")
out, code = u.rotlab({ "query", merged, "SELECT count(*) AS n, max(fold) AS f FROM run", "--format", "json" })
t:is(out, '[{"f":null,"n":100}]\n', "rotlab query --format json (NULL as null)")

---------------------------------------------------------------------------------------------- idempotence

local before = raw_dump(merged)
out, code = u.rotlab({ "db", "merge", merged, table.unpack(shards) })
t:ok(code == 0 and select(2, out:gsub("25 runs: 0 new, 0 replaced, 25 kept", "")) == 4, "a second merge keeps all",
  out)
same_dump(raw_dump(merged), before, "merging twice changes nothing (every row, ids included)")
local reversed = dir .. "/reversed.db"
for i = 4, 1, -1 do u.rotlab({ "db", "merge", reversed, shards[i] }) end
same_dump(dump(reversed), dump(merged), "merging the shards in another order, one call each, gives the same rows")
local partial = dir .. "/partial.db"
u.rotlab({ "db", "merge", partial, shards[1], shards[2] })
u.rotlab({ "db", "merge", partial, shards[2], shards[3], shards[4], shards[1] })
same_dump(dump(partial), dump(merged), "overlapping merges give the same rows")

---------------------------------------------------------------------------------------------- better status wins

do
  local better = dir .. "/better.db"
  u.rotlab({ "db", "merge", better, shards[1] })
  local c = rl.sqlite.open(better)
  c:exec("PRAGMA foreign_keys = ON")
  local victim = c:query("SELECT id, run_key FROM run ORDER BY id LIMIT 1")[1]
  c:query("UPDATE run SET status = 'FAILED', error = 'boom' WHERE id = ?", victim.id)
  c:query("DELETE FROM metric WHERE run_id = ?", victim.id)
  c:close()
  out, code = u.rotlab({ "db", "merge", better, shards[1] })
  t:ok(code == 0 and out:find("25 runs: 0 new, 1 replaced, 24 kept"), "a FINISHED shard run replaces a FAILED one",
    out)
  t:is(u.scalar(better, "SELECT status FROM run WHERE run_key = ?", victim.run_key), "FINISHED", "status replaced")
  t:is(u.scalar(better, "SELECT count(*) FROM metric m JOIN run r ON r.id = m.run_id WHERE r.run_key = ?",
    victim.run_key), 6, "metrics copied again")
  t:is(u.scalar(better, "SELECT count(*) FROM run"), 25, "no second row for the key")
  -- a worse shard run never replaces a better one
  local worse = dir .. "/worse.db"
  u.rotlab({ "db", "merge", worse, shards[1] })
  c = rl.sqlite.open(worse)
  c:query("UPDATE run SET status = 'FAILED' WHERE run_key = ?", victim.run_key)
  c:close()
  out, code = u.rotlab({ "db", "merge", better, worse })
  t:ok(code == 0 and out:find("25 runs: 0 new, 0 replaced, 25 kept"), "a FAILED shard run does not replace a " ..
    "FINISHED one", out)
  same_dump(dump(better), dump(shards[1]), "the merged DB holds exactly the shard's rows")
end

u.cleanup()
os.exit(t:done())
