--[[
rotlab.tap -- a small Test Anything Protocol producer for test scripts run by `prove`.
  local t = require("rotlab.tap")()
  t:ok(cond, name); t:is(got, want, name); t:near(got, want, tol, name); t:raises(fn, pattern, name)
  t:todo(cond, name, reason)        -- a known problem: "not ok ... # TODO reason" does not fail the file
  t:skip_all(reason); t:done()      -- done() prints the plan and returns the exit code
Every check prints one line; a failure also prints a diagnostic (#) line with what was expected.
]]
local Tap = {}
Tap.__index = Tap

local function new()
  return setmetatable({ n = 0, failed = 0 }, Tap)
end

local function emit(self, pass, name, diag)
  self.n = self.n + 1
  if not pass then self.failed = self.failed + 1 end
  io.write(("%s %d - %s\n"):format(pass and "ok" or "not ok", self.n, (name or ""):gsub("\n", " ")))
  if not pass and diag then
    for line in tostring(diag):gmatch("[^\n]+") do io.write("#   ", line, "\n") end
  end
  io.flush()
  return pass
end

function Tap:ok(cond, name, diag) return emit(self, cond and true or false, name, diag) end

function Tap:is(got, want, name)
  return emit(self, got == want, name, ("got:      %s\nexpected: %s"):format(tostring(got), tostring(want)))
end

-- |got - want| <= tol (absolute), NaN never passes
function Tap:near(got, want, tol, name)
  local pass = type(got) == "number" and math.abs(got - want) <= tol
  return emit(self, pass, name, ("got:      %s\nexpected: %s (tolerance %g)"):format(tostring(got), tostring(want), tol))
end

-- fn() must raise an error whose message matches the Lua pattern
function Tap:raises(fn, pattern, name)
  local ok, err = pcall(fn)
  if ok then return emit(self, false, name, "no error was raised; expected one matching: " .. pattern) end
  err = tostring(err)
  return emit(self, err:find(pattern) ~= nil, name, ("error:    %s\nexpected: %s"):format(err, pattern))
end

-- A TAP TODO check: printed with "# TODO reason"; a failure is reported but not counted against the file, and prove
-- lists a passing one as "unexpectedly succeeded" (time to turn it into a plain check).
function Tap:todo(cond, name, reason, diag)
  self.n = self.n + 1
  local pass = cond and true or false
  io.write(("%s %d - %s # TODO %s\n"):format(pass and "ok" or "not ok", self.n, (name or ""):gsub("\n", " "),
    (reason or ""):gsub("\n", " ")))
  if not pass and diag then
    for line in tostring(diag):gmatch("[^\n]+") do io.write("#   ", line, "\n") end
  end
  io.flush()
  return pass
end

function Tap:diag(msg)
  for line in tostring(msg):gmatch("[^\n]+") do io.write("# ", line, "\n") end
end

function Tap:skip_all(reason)
  io.write("1..0 # SKIP ", reason, "\n")
  os.exit(0)
end

function Tap:done()
  io.write(("1..%d\n"):format(self.n))
  io.flush()
  if self.n == 0 then
    io.stderr:write("no checks ran\n")
    return 1
  end
  return self.failed > 0 and 1 or 0
end

return new
