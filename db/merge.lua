--[[
db.merge -- `rotlab db merge OUT.db SHARD.db ...`: merges results DBs (the shard DBs of a Slurm array) into one.
  merge.merge(out_path, shard_paths) -> stats   every shard is checked first (exists, a rotlab results DB of a
        schema this rotlab reads, not OUT itself); nothing is written when one is wrong
        stats[i] = {path, runs, inserted, replaced, kept}
  merge.main(argv, usage) -> exit code (0; 2 with a message on stderr for bad input)
One shard at a time: ATTACH it to OUT's connection, copy inside one BEGIN IMMEDIATE transaction, DETACH. Runs are
matched by run_key (the stable hash of experiment, config, seed and fold): a run OUT lacks is copied with its
params, metrics, traces and artifacts (new row ids); a run OUT has is replaced only when the shard's status ranks
higher (FINISHED > FAILED > INTERRUPTED > RUNNING), else kept. Experiments are matched by name (the earliest
`created` is kept). Merging the same shards again therefore changes nothing, and the order of shards only matters
between runs of equal rank.
]]
local results = require "db.results"

local merge = {}

local RANK = { RUNNING = 1, INTERRUPTED = 2, FAILED = 3, FINISHED = 4 }
-- run columns copied as they are (id and experiment_id are mapped, pid only exists from schema version 2)
local RUN_COLUMNS = { "run_key", "config_json", "seed", "fold", "status", "started", "finished", "wall_seconds",
  "host", "code_version", "error", "heartbeat" }
local CHILDREN = {
  param = "name, value_json, value_num",
  metric = "step, split, name, value, value_class",
  trace = "step, key, n, vals",
  artifact = "name, kind, path, data",
}
local CHILD_ORDER = { "param", "metric", "trace", "artifact" }

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- Checks one shard without writing anything; returns its schema version.
local function check_shard(path)
  if not file_exists(path) then error(("no such shard DB: '%s'"):format(path), 0) end
  local ok, store = pcall(results.open, path, { readonly = true })
  if not ok then error(("shard '%s': %s"):format(path, store), 0) end
  local version = store.version
  store:close()
  return version
end

local function copy_children(db, from_id, to_id)
  for _, t in ipairs(CHILD_ORDER) do
    db:query(("INSERT INTO main.%s (run_id, %s) SELECT ?, %s FROM shard.%s WHERE run_id = ?"):format(t,
      CHILDREN[t], CHILDREN[t], t), to_id, from_id)
  end
end

local function merge_one(store, path, version)
  local db = store.db
  db:query("ATTACH DATABASE ? AS shard", path)
  local ok, res = pcall(function()
    local files = {}
    for row in db:rows("PRAGMA database_list") do files[row.name] = row.file end
    if files.shard == files.main and files.main ~= "" then
      error(("'%s' is the output DB itself"):format(path), 0)
    end
    return results.transaction(db, function()
      local stats = { path = path, runs = 0, inserted = 0, replaced = 0, kept = 0 }
      local exp_map = {}
      for e in db:rows("SELECT id, name, created, script, code_version FROM shard.experiment") do
        local m = db:query("SELECT id FROM main.experiment WHERE name = ?", e.name)[1]
        if m then
          exp_map[e.id] = m.id
          -- the earliest creation wins, so the order of merges does not matter
          db:query("UPDATE main.experiment SET created = ? WHERE id = ? AND created > ?", e.created, m.id, e.created)
        else
          db:query("INSERT INTO main.experiment (name, created, script, code_version) VALUES (?, ?, ?, ?)",
            e.name, e.created, e.script, e.code_version)
          exp_map[e.id] = db:last_insert_id()
        end
      end
      local cols = table.concat(RUN_COLUMNS, ", ")
      local pid_col = version >= 2 and "pid" or "NULL AS pid"
      local runs = db:query(("SELECT id, experiment_id, %s, %s FROM shard.run ORDER BY id"):format(cols, pid_col))
      local marks = {}
      for i = 1, #RUN_COLUMNS + 2 do marks[i] = "?" end
      local function values(r, exp_id)
        local v = { exp_id }
        for i, c in ipairs(RUN_COLUMNS) do v[i + 1] = r[c] end
        v[#RUN_COLUMNS + 2] = r.pid
        return v
      end
      for _, r in ipairs(runs) do
        stats.runs = stats.runs + 1
        local exp_id = exp_map[r.experiment_id]
        local m = db:query("SELECT id, status FROM main.run WHERE run_key = ?", r.run_key)[1]
        if not m then
          local v = values(r, exp_id)
          db:query(("INSERT INTO main.run (experiment_id, %s, pid) VALUES (%s)"):format(cols,
            table.concat(marks, ", ")), table.unpack(v, 1, #RUN_COLUMNS + 2))
          copy_children(db, r.id, db:last_insert_id())
          stats.inserted = stats.inserted + 1
        elseif (RANK[r.status] or 0) > (RANK[m.status] or 0) then
          for _, t in ipairs(CHILD_ORDER) do db:query(("DELETE FROM main.%s WHERE run_id = ?"):format(t), m.id) end
          local sets = { "experiment_id = ?" }
          for _, c in ipairs(RUN_COLUMNS) do sets[#sets + 1] = c .. " = ?" end
          sets[#sets + 1] = "pid = ?"
          local v = values(r, exp_id)
          v[#RUN_COLUMNS + 3] = m.id
          db:query(("UPDATE main.run SET %s WHERE id = ?"):format(table.concat(sets, ", ")),
            table.unpack(v, 1, #RUN_COLUMNS + 3))
          copy_children(db, r.id, m.id)
          stats.replaced = stats.replaced + 1
        else
          stats.kept = stats.kept + 1
        end
      end
      return stats
    end)
  end)
  pcall(db.exec, db, "DETACH DATABASE shard")
  if not ok then error(res, 0) end
  return res
end

function merge.merge(out_path, shard_paths)
  if type(out_path) ~= "string" or out_path == "" then
    error("merge: bad argument #1 (OUT path: expected a non-empty string)", 0)
  end
  if type(shard_paths) ~= "table" or #shard_paths == 0 then
    error("merge: bad argument #2 (expected a non-empty list of shard DB paths)", 0)
  end
  local versions = {}
  for i, p in ipairs(shard_paths) do
    if type(p) ~= "string" or p == "" then error(("merge: shard %d: expected a path"):format(i), 0) end
    versions[i] = check_shard(p)
  end
  local store <close> = results.open(out_path)
  local all = {}
  for i, p in ipairs(shard_paths) do all[i] = merge_one(store, p, versions[i]) end
  return all
end

function merge.main(argv, usage)
  local paths = {}
  for i = 3, #argv do
    local a = argv[i]
    if a == "--help" or a == "-h" then
      print(usage)
      return 0
    end
    if a:match("^%-") then
      io.stderr:write(("rotlab db merge: unknown option '%s'\n%s\n"):format(a, usage))
      return 2
    end
    paths[#paths + 1] = a
  end
  if #paths < 2 then
    io.stderr:write(("rotlab db merge: %s\n%s\n"):format(#paths == 0 and "missing OUT.db and SHARD.db" or
      "missing SHARD.db (at least one)", usage))
    return 2
  end
  local out = table.remove(paths, 1)
  local ok, stats = pcall(merge.merge, out, paths)
  if not ok then
    io.stderr:write("rotlab db merge: ", tostring(stats), "\n")
    return 2
  end
  for _, s in ipairs(stats) do
    print(("merged %s: %d runs: %d new, %d replaced, %d kept"):format(s.path, s.runs, s.inserted, s.replaced, s.kept))
  end
  return 0
end

return merge
