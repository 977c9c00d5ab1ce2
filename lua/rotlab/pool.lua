--[[
rotlab.pool -- every set pooling as rl.pool.<name>{options}. The constructors are C functions registered by the
binding as core.pool_<name> (from any binding file), so new poolings appear here without editing this file.
  rl.pool.list()            -> sorted list of the pooling names
  rl.pool.make(name, opts)  -> rl.pool[name](opts), with an error naming the known poolings for an unknown name
  rl.pool.doc(name)         -> the pooling's documentation: what it computes, its output width and every option
  rl.pool.docs              -> the catalogue behind doc(): docs[name] = {summary =, output =, options = {{name, text}}}
tests/pool.t checks that every pooling has an entry and that each entry lists exactly the options its constructor
accepts.
]]
local core = require "rotlab.core"

local pool = {}
local names = {}

for k, v in pairs(core) do
  if type(k) == "string" and k:find("^pool_") then
    local name = k:sub(6)
    pool[name] = v
    names[#names + 1] = name
  end
end
table.sort(names)

function pool.list()
  return { table.unpack(names) }
end

-- The catalogue: one entry per pooling; the options in the order the constructor lists them.
local COMPAT = { "compat", "\"paper\" (default) | \"reference\": reproduce the authors' code (golden/README.md)" }
local DIM = { "dim", "input width D (required)" }
local DIM_ANY = { "dim", "input width D (optional: absent = any width)" }
local RNG = { "rng", "an rl.rng generator for the initial parameters (default: the global one)" }
local docs = {
  add = { summary = "sum of the rows of each set", output = "D",
    options = { DIM_ANY } },
  mean = { summary = "mean of the rows of each set", output = "D",
    options = { DIM_ANY } },
  max = { summary = "feature-wise max over the rows of each set (gradient to the arg-max row)", output = "D",
    options = { DIM_ANY } },
  attention = { summary = "attention pooling (Ilse et al. 2018): softmax over the set of w^T tanh(V x), weighted sum",
    output = "D", options = { DIM, { "hidden", "width of V (128)" }, RNG } },
  gated_attention = { summary = "gated attention (Ilse et al. 2018): w^T (tanh(V x) * sigmoid(U x))", output = "D",
    options = { DIM, { "hidden", "width of V and U (128)" }, COMPAT, RNG } },
  mixed = { summary = "learned scalar mix of mean and max: s mean + (1 - s) max, s = sigmoid(a)", output = "D",
    options = { DIM_ANY, COMPAT, RNG } },
  gated_mixed = { summary = "mean-max mix gated per set: g mean + (1 - g) max, g = sigmoid(w . mean(X))", output = "D",
    options = { DIM, COMPAT, RNG } },
  deepset = { summary = "DeepSets: learned mix of add and max followed by an MLP", output = "D",
    options = { DIM, { "hidden", "hidden width of the MLP (D)" }, COMPAT, RNG } },
  set2set = { summary = "Set2Set (Vinyals et al.): an LSTM attends over the set for T steps", output = "2 D",
    options = { DIM, { "steps", "processing steps T (3)" }, COMPAT, RNG } },
  dynamic = { summary = "dynamic routing pooling (Yan et al. 2018): k routing iterations; no parameters",
    output = "D", options = { DIM_ANY, { "k", "routing iterations (3)" }, COMPAT } },
  gnp = { summary = "generalized norm pooling: per block (sum_n |x_nd|^p)^(1/p) / N^q with learned p, q, then a linear map",
    output = "D", options = { DIM, COMPAT, RNG } },
  rotp = { summary = "regularized optimal-transport pooling (ROTP, DESIGN section 2): a transport plan P (D x N) "
      .. "solves the regularized OT problem, output eq. 5; exact unrolled or implicit backward", output = "D",
    options = {
      DIM,
      { "solver", "\"sinkhorn\" (default) | \"badmm-e\" | \"badmm-q\"" },
      { "iters", "unrolled iterations T (4)" },
      { "inner", "inner Sinkhorn iterations K of the structured solver (5; only sinkhorn with alpha0 > 0)" },
      { "alpha0", "0 (default: unbalanced OT) | \"learn\" | a fixed value > 0 (Gromov-Wasserstein structure term)" },
      { "shared", "one value of each alpha for all iterations (false: one per iteration)" },
      { "entries", "raw vector lengths, a number or {a1 = n, ...} (default iters, 1 when shared)" },
      { "init", "initial effective (softplus) values {a0 =, a1 =, a2 =, a3 =, rho =}, each > 0" },
      { "fixed", "fixed effective values {a2 = 0, ...}, each >= 0 (not learned)" },
      { "p0", "\"uniform\" (default) | \"learn\": the feature prior" },
      { "q0", "\"uniform\" (default) | \"learn\" (attention over the set, as the paper) | {w1, ..., wN}: "
        .. "the sample prior (a fixed list: normalised, for sets of exactly N rows)" },
      { "q0_hidden", "hidden width of the learned q0 attention (2 D)" },
      { "output", "\"paper\" (eq. 5, default) | \"reference\" (the authors' normalisation)" },
      { "structure", "similarity matrices \"paper\" (covariance, default) | \"reference\" (the authors')" },
      { "compat", "\"none\" (default) | \"reference\": every convention of the authors' code" },
      { "grad", "\"unrolled\" (default) | \"implicit\" (fixed-point gradient, alpha0 = 0, memory independent of T)" },
      { "debug", "keep the structure gradients for pool:debug_grads() (false)" },
      RNG } },
  hrotp = { summary = "hierarchical ROTP: M-head mixed pooling (eq. 13) or set-of-sets fusion (eq. 14)",
    output = "D (mixed), g's output width (fusion)",
    options = {
      DIM,
      { "mode", "\"mixed\" (default) | \"fusion\" (needs an rl.groups batch)" },
      { "heads", "number of heads M (mixed; 2)" },
      { "head", "rotp options of every head, or one table per head (fusion: the lower ROTP)" },
      { "top", "rotp options of the top ROTP" },
      { "g", "fusion: a row-wise module (or Sequential) between the two levels" },
      RNG } },
  swe = { summary = "sliced-Wasserstein embedding (DESIGN section 3): L learnable unit slices, M learnable "
      .. "reference points, sort-based, interpolated when N != M", output = "L M (flat) or M + L (reference)",
    options = {
      DIM, { "slices", "number of slices L (required)" },
      { "refs", "number of reference points M (required)" },
      { "output", "\"flat\" (default: the L x M embedding) | \"reference\" (the authors' aggregation)" },
      { "tau", "temperature of the softmax over slices of the reference output (1)" },
      COMPAT, RNG } },
  cswe = { summary = "constrained SWE: SWE whose slices are bounded by per-slice SWGG constraints, with slack and "
      .. "duals (trained primal-dual by rl.optim.primal_dual or the experiment runner)",
    output = "as swe",
    options = {
      DIM, { "slices", "number of slices L (required)" },
      { "refs", "number of reference points M (required)" },
      { "output", "as swe" }, { "tau", "as swe" }, COMPAT, RNG,
      { "soft", "soft SWGG operator \"softsort\" (default) | \"lapsum\" (default with compat = \"reference\")" },
      { "temperature", "of the soft operator (softsort 1, lapsum 10)" },
      { "eps", "per-slice bounds: a number or a vector of L values" },
      { "eps_fraction", "bounds as this fraction of each slice's SWGG on the first training batch" },
      { "slack", "resilient slack u >= 0 (true; false with compat = \"reference\", as the authors)" },
      { "alpha", "slack penalty (alpha / 2) ||u||^2 (1)" },
      { "lr_slack", "slack learning rate (0.1)" }, { "lr_dual", "dual learning rate (0.1)" } } },
}
pool.docs = docs

function pool.doc(name)
  if type(name) ~= "string" then
    error(("bad argument #1 to 'doc' (expected a pooling name, got %s)"):format(type(name)), 2)
  end
  local d = docs[name]
  if d == nil or core["pool_" .. name] == nil then
    error(("bad argument #1 to 'doc' (unknown pooling '%s'; known poolings: %s)"):format(name,
      table.concat(names, ", ")), 2)
  end
  local out = { ("rl.pool.%s{...}: %s; output width %s"):format(name, d.summary, d.output) }
  for _, o in ipairs(d.options) do out[#out + 1] = ("  %-13s %s"):format(o[1], o[2]) end
  return table.concat(out, "\n")
end

function pool.make(name, opts)
  if type(name) ~= "string" then
    error(("bad argument #1 to 'make' (expected a pooling name, got %s)"):format(type(name)), 2)
  end
  local ctor = core["pool_" .. name]
  if ctor == nil then
    error(("bad argument #1 to 'make' (unknown pooling '%s'; known poolings: %s)"):format(name,
      table.concat(names, ", ")), 2)
  end
  local m = ctor(opts)
  return m
end

return pool
