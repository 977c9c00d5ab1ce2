#!/usr/bin/env rotlab
-- The experiment runner end to end on the shipped digit bags: runs are logged, reruns are skipped, a failing
-- configuration is recorded as FAILED with its error, and the quickstart script produces the report table.
local rl = require "rotlab"
local experiment = require "rotlab.experiment"
local t = require("rotlab.tap")()

local bags = "build/data/digit_bags.h5"
if not io.open(bags) then t:skip_all("build/data/digit_bags.h5 missing (make data)") end
local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. dir)
local db = dir .. "/exp.db"

local spec = {
  name = "runner-test", data = bags, db = db, seeds = { 1, 2 },
  configs = { { pool = "mean" }, { pool = "max" } },
  defaults = { epochs = 2, batch_size = 32, hidden = 16, layers = 1 },
}
local s = experiment.run(spec)
t:is(s.finished, 4, "2 configs x 2 seeds finished")
t:is(s.failed, 0, "no failures")

local store = rl.db.open(db)
local runs = store:runs({ experiment = "runner-test" })
t:is(#runs, 4, "4 run rows")
local all_finished = true
for _, r in ipairs(runs) do all_finished = all_finished and r.status == "FINISHED" end
t:ok(all_finished, "every run is FINISHED")
local ms = store:metrics(runs[1].id)
local seen = {}
for _, m in ipairs(ms) do seen[m.split .. "/" .. m.name .. "@" .. m.step] = m.value end
t:ok(seen["train/loss@1"] and seen["train/loss@2"], "train loss logged per epoch")
t:ok(seen["test/acc@2"] and seen["test/acc@2"] >= 0 and seen["test/acc@2"] <= 1, "test accuracy in [0, 1]")
t:ok(seen["val/acc@2"] ~= nil, "validation accuracy logged")
store:close()

local again = experiment.run(spec)
t:is(again.skipped, 4, "rerun skips the finished runs")
t:is(again.finished, 0, "rerun trains nothing")

-- same seed, same numbers: a fresh DB reproduces the first run's accuracy exactly
local spec2 = {}
for k, v in pairs(spec) do spec2[k] = v end
spec2.db = dir .. "/exp2.db"
experiment.run(spec2)
local a, b = rl.db.open(db), rl.db.open(spec2.db)
local ra, rb = a:runs({ experiment = "runner-test" }), b:runs({ experiment = "runner-test" })
local function final_acc(store_, id)
  local v
  for _, m in ipairs(store_:metrics(id, { split = "test", name = "acc" })) do v = m.value end
  return v
end
t:is(final_acc(a, ra[1].id), final_acc(b, rb[1].id), "runs are reproducible from their seed")
a:close()
b:close()

local bad = experiment.run{ name = "runner-fail", data = bags, db = db, seeds = { 1 },
  configs = { { pool = "no_such_pool" } }, defaults = { epochs = 1 } }
t:is(bad.failed, 1, "an unknown pooling fails the run")
local st = rl.db.open(db)
local fr = st:runs({ experiment = "runner-fail" })[1]
t:is(fr.status, "FAILED", "failed run recorded as FAILED")
t:ok(tostring(fr.error):find("no_such_pool"), "error message kept in the run row")
st:close()

t:raises(function() experiment.run{ name = "x", data = bags, db = db, configs = {} } end,
  "option 'configs' must be a non%-empty list", "empty configs rejected")
t:raises(function() experiment.run{ name = "x", data = bags, db = db, configs = { {} }, seeds = { 1.5 } } end,
  "seeds must be integers", "non-integer seed rejected")
t:raises(function() experiment.run{ name = "x", data = dir .. "/missing.h5", db = db, configs = { {} } } end,
  "missing.h5", "missing data file named")

-- the quickstart script itself, reduced
local host = "build/bin/rotlab"
local p = io.popen(host .. " run experiments/quickstart.lua db=" .. dir .. "/q.db epochs=1 seeds=1 pools=mean,max 2>&1")
local out = p:read("a")
local ok = p:close()
t:ok(ok, "quickstart exits 0", out)
t:ok(out:find("mean") and out:find("max") and out:find("test/acc"), "quickstart prints the report table", out)
os.execute("rm -rf " .. dir)
os.exit(t:done())
