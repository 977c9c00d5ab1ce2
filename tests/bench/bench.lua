--[[
bench.lua -- `make bench`: runs every tests/bench/*.lua benchmark file (except this one) in its own process, so each
reports its own peak memory. Each file prints its own table; figures are milliseconds (median of repeats).
]]
local self_path = arg and arg[0] or "tests/bench/bench.lua"
local dir = self_path:match("^(.*)/[^/]*$") or "."
local host = os.getenv("ROTLAB") or "build/bin/rotlab"
local files = {}
local p = io.popen('ls "' .. dir .. '"/*.lua 2>/dev/null')
for f in p:lines() do
  if not f:match("/bench%.lua$") then files[#files + 1] = f end
end
p:close()
table.sort(files)
local status = 0
for _, f in ipairs(files) do
  print(("== %s"):format(f))
  local ok = os.execute(host .. ' run "' .. f .. '"')
  if not ok then status = 1 end
end
return status
