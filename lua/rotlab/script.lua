--[[
rotlab.script -- running a Lua experiment script the way `rotlab run` does, for the CLI commands that need it.
  script.parse_params(list, first) -> {key = value}   key=value strings; numbers and true/false converted
  script.run(path, list, first) -> the script's integer return value (0 when it returns none)
  script.parse_args(argv, first, flags) -> opts, positional, params
        flags = {["--jobs"] = "value", ["--quiet"] = "flag"}; opts["jobs"] = "4" (string), opts["quiet"] = true;
        --flag=value or --flag value; key=value words go to params (a list of strings), other words to positional;
        "--" ends the flags. Errors (unknown flag, missing value, repeated flag) are raised as plain strings.
The script receives the key=value table as `...`, and the global `arg` = {[0] = path, key=value strings...}.
A missing or unparsable script is an error naming the file.
]]
local script = {}

function script.parse_params(list, first)
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

function script.run(path, list, first)
  local f = io.open(path, "r")
  if not f then error(("cannot open script '%s'"):format(path), 0) end
  f:close()
  local chunk, err = loadfile(path)
  if not chunk then error(err, 0) end
  local params = script.parse_params(list, first)
  local script_arg = { [0] = path }
  for i = first, #list do script_arg[#script_arg + 1] = list[i] end
  arg = script_arg
  local rc = chunk(params)
  return math.type(rc) == "integer" and rc or 0
end

function script.parse_args(argv, first, flags)
  local opts, positional, params = {}, {}, {}
  local i, only_words = first, false
  while i <= #argv do
    local a = argv[i]
    if not only_words and a == "--" then
      only_words = true
    elseif not only_words and a:match("^%-") then
      local flag, value = a:match("^(%-%-[%w_-]+)=(.*)$")
      flag = flag or a
      local kind = flags[flag]
      if not kind then error(("unknown option '%s'"):format(a), 0) end
      local name = flag:gsub("^%-+", "")
      if opts[name] ~= nil then error(("option %s given twice"):format(flag), 0) end
      if kind == "flag" then
        if value then error(("option %s takes no value"):format(flag), 0) end
        opts[name] = true
      else
        if value == nil then
          i = i + 1
          value = argv[i]
          if value == nil then error(("option %s needs a value"):format(flag), 0) end
        end
        if value == "" then error(("option %s needs a non-empty value"):format(flag), 0) end
        opts[name] = value
      end
    elseif a:match("^[%w_%.%-]+=") then
      params[#params + 1] = a
    else
      positional[#positional + 1] = a
    end
    i = i + 1
  end
  return opts, positional, params
end

return script
