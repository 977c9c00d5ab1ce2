--[[
rotlab.cli -- the `rotlab` command line. Returns a function(argv) -> exit code.
  rotlab run SCRIPT.lua [key=value ...]   run an experiment script (SCRIPT receives the key=value table as ...)
  rotlab SCRIPT                           the same (lets test files use `#!/usr/bin/env rotlab`)
  rotlab report DB [--format text|markdown|csv]
  rotlab convert mil DIR OUT.h5 [options]   convert a dataset into rotlab's HDF5 format (rotlab.mil)
]]
local commands = {}

local usage = [[
usage: rotlab <command> [args]
commands:
  run SCRIPT.lua [key=value ...]   run a Lua experiment script
  report DB [options]              mean +- std per configuration (rotlab report --help)
  convert FORMAT IN OUT.h5 [opts]  convert a dataset (formats: mil; rotlab convert mil --help)
  help                             this text
Every command takes --help.]]

-- key=value strings -> table (numbers and booleans converted)
local function parse_params(list, first)
  local params = {}
  for i = first, #list do
    local k, v = list[i]:match("^([%w_%.%-]+)=(.*)$")
    if not k then error(("bad argument '%s' (expected key=value)"):format(list[i]), 0) end
    if v == "true" then v = true
    elseif v == "false" then v = false
    elseif tonumber(v) then v = tonumber(v) end
    params[k] = v
  end
  return params
end

local function run_script(path, argv, first)
  local chunk, err = loadfile(path)
  if not chunk then error(err, 0) end
  local params = parse_params(argv, first)
  local script_arg = { [0] = path }
  for i = first, #argv do script_arg[#script_arg + 1] = argv[i] end
  arg = script_arg
  local rc = chunk(params)
  return math.type(rc) == "integer" and rc or 0
end

function commands.run(argv)
  local path = argv[2]
  if path == nil or path == "--help" or path == "-h" then
    print("usage: rotlab run SCRIPT.lua [key=value ...]\n" ..
      "Runs SCRIPT with the key=value pairs as a table (its `...`); numbers and true/false are converted.")
    return path == nil and 2 or 0
  end
  return run_script(path, argv, 3)
end

function commands.help()
  print(usage)
  return 0
end

function commands.report(argv)
  return require("rotlab.report").main(argv)
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
    return run_script(cmd, argv, 2)
  end
  io.stderr:write(("rotlab: unknown command '%s'\n%s\n"):format(cmd, usage))
  return 2
end
