--[[
quickstart.lua -- the main job (`make run`): add / mean / max / attention pooling x 3 seeds on the digit bags
(MIL bags of UCI handwritten digits, positive iff a bag holds a 9; see README), with an MLP instance encoder.
Results go to results/quickstart.db; the report table is printed at the end.

  rotlab run experiments/quickstart.lua [bags=build/data/digit_bags.h5] [db=results/quickstart.db]
                                        [epochs=15] [seeds=3] [pools=add,mean,max,attention]
]]
local rl = require "rotlab"
local experiment = require "rotlab.experiment"
local report = require "rotlab.report"

local args = ... or {}
local bags = args.bags or "build/data/digit_bags.h5"
local db = args.db or "results/quickstart.db"
local nseeds = math.tointeger(args.seeds or 3)
assert(nseeds and nseeds >= 1, "seeds must be a positive integer")

local pools = {}
for name in tostring(args.pools or "add,mean,max,attention"):gmatch("[^,]+") do pools[#pools + 1] = name end
local configs = {}
for _, p in ipairs(pools) do configs[#configs + 1] = { pool = p } end
local seeds = {}
for s = 1, nseeds do seeds[s] = s end

local f = io.open(bags)
if not f then
  io.stderr:write(("quickstart: %s not found -- build the data first: make data\n"):format(bags))
  return 2
end
f:close()

local summary = experiment.run{
  name = "quickstart",
  script = "experiments/quickstart.lua",
  data = bags,
  db = db,
  configs = configs,
  seeds = seeds,
  defaults = { epochs = math.tointeger(args.epochs or 15), batch_size = 16, lr = 1e-3, weight_decay = 1e-4,
               hidden = 64, layers = 2 },
  split = { train = 0.6, val = 0.2, test = 0.2 },
}
print(("quickstart: %d runs finished, %d skipped (already in %s), %d failed, %.1f s"):format(
  summary.finished, summary.skipped, db, summary.failed, summary.seconds))
return report.main({ "report", db })
