--[[
rotlab.cli -- the `rotlab` command line. Returns a function(argv) -> exit code.
  rotlab run SCRIPT.lua [key=value ...]   run an experiment script (SCRIPT receives the key=value table as ...)
  rotlab SCRIPT                           the same (lets test files use `#!/usr/bin/env rotlab`)
  rotlab grid SCRIPT.lua [--jobs N] [--shard I/N] ...       (rotlab.launch)
  rotlab slurm SCRIPT.lua --array N ...                     (rotlab.slurm)
  rotlab report DB [--format text|markdown|csv]             (rotlab.report)
  rotlab query DB "SQL" [--format text|csv|json]            (rotlab.query)
  rotlab plot DB --run ID --trace swgg|swgg_soft|slack|dual  (rotlab.plot)
  rotlab db merge OUT.db SHARD.db ...                       (db.merge)
  rotlab convert mil DIR OUT.h5 [options]                   (rotlab.mil)
Every command takes --help; bad input is a message on stderr and exit code 2.
]]
local script = require "rotlab.script"

local commands = {}

local usage = [[
usage: rotlab <command> [args]
commands:
  run SCRIPT.lua [key=value ...]        run a Lua experiment script
  grid SCRIPT.lua [--jobs N] [--shard I/N] [options]
                                        run a grid script with N worker processes, resumable (rotlab grid --help)
  slurm SCRIPT.lua --array N [options]  write a Slurm array job + a dependent merge job (rotlab slurm --help)
  report DB [options]                   mean +- std per configuration (rotlab report --help)
  query DB "SQL" [--format F]           run one read-only SQL statement on a results DB
  plot DB --run ID --trace NAME [opts]  draw a run's per-slice trace (C-SWE SWGG, slack, duals) to PNG and SVG
                                        with gnuplot (rotlab plot --help)
  db merge OUT.db SHARD.db ...          merge shard DBs into OUT.db, idempotently
  convert FORMAT IN OUT.h5 [opts]       convert a dataset (formats: mil; rotlab convert mil --help)
  help                                  this text
Every command takes --help.]]

function commands.run(argv)
  local path = argv[2]
  if path == nil or path == "--help" or path == "-h" then
    print("usage: rotlab run SCRIPT.lua [key=value ...]\n" ..
      "Runs SCRIPT with the key=value pairs as a table (its `...`); numbers and true/false are converted.")
    return path == nil and 2 or 0
  end
  if path:match("^%-") then
    io.stderr:write(("rotlab run: unknown option '%s' (see rotlab run --help)\n"):format(path))
    return 2
  end
  local f = io.open(path, "r")
  if not f then
    io.stderr:write(("rotlab run: cannot open script '%s'\n"):format(path))
    return 2
  end
  f:close()
  local ok, err = pcall(script.parse_params, argv, 3)
  if not ok then
    io.stderr:write("rotlab run: ", err, "\n")
    return 2
  end
  return script.run(path, argv, 3)
end

function commands.help()
  print(usage)
  return 0
end

function commands.report(argv) return require("rotlab.report").main(argv) end
function commands.grid(argv) return require("rotlab.launch").main(argv) end
function commands.slurm(argv) return require("rotlab.slurm").main(argv) end
function commands.query(argv) return require("rotlab.query").main(argv) end
function commands.plot(argv) return require("rotlab.plot").main(argv) end

local db_usage = [[
usage: rotlab db merge OUT.db SHARD.db [SHARD.db ...]
Merges the runs of results DBs (e.g. the shard DBs of `rotlab grid --shard`) into OUT.db (created when missing),
one shard at a time (ATTACH, one transaction, DETACH). Runs are matched by run_key: a run missing from OUT.db is
copied with its params, metrics, traces and artifacts; a run already in OUT.db is replaced only by a better status
(FINISHED > FAILED > INTERRUPTED > RUNNING). Merging the same shards again changes nothing.]]

function commands.db(argv)
  local sub = argv[2]
  if sub == nil or sub == "--help" or sub == "-h" or sub == "help" then
    print(db_usage)
    return sub == nil and 2 or 0
  end
  if sub ~= "merge" then
    io.stderr:write(("rotlab db: unknown subcommand '%s' (expected merge)\n%s\n"):format(sub, db_usage))
    return 2
  end
  return require("db.merge").main(argv, db_usage)
end

-- rotlab convert FORMAT ...: one module per input format, each with main(argv)
local converters = { mil = "rotlab.mil" }

function commands.convert(argv)
  local fmt = argv[2]
  if fmt == nil or fmt == "--help" or fmt == "-h" then
    print("usage: rotlab convert FORMAT IN OUT.h5 [options]\nformats: mil (rotlab convert mil --help)")
    return fmt == nil and 2 or 0
  end
  if not converters[fmt] then
    io.stderr:write(("rotlab convert: unknown format '%s' (known: mil)\n"):format(fmt))
    return 2
  end
  return require(converters[fmt]).main(argv)
end

return function(argv)
  local cmd = argv[1]
  if cmd == nil or cmd == "--help" or cmd == "-h" then
    print(usage)
    return cmd == nil and 2 or 0
  end
  if commands[cmd] then return commands[cmd](argv) end
  -- a script path: rotlab SCRIPT [key=value ...] (also used by the tests' #! lines)
  local f = io.open(cmd, "r")
  if f then
    f:close()
    return script.run(cmd, argv, 2)
  end
  io.stderr:write(("rotlab: unknown command '%s'\n%s\n"):format(cmd, usage))
  return 2
end
