--[[
rotlab.mil -- multiple-instance-learning datasets in the text layout of ../shared/data (data.csv feature-major,
bagids.csv, labels.csv; parsed and validated in C: core/data/mil.c) and their conversion to rotlab's HDF5 dataset
format (DESIGN section 5), plus the `rotlab convert mil` command.

  local mil = require "rotlab.mil"
  mil.read(dir) -> {X = n x d tensor, offsets = {0, ..., n}, y = {...}, bags =, instances =, dim =, positives =}
  mil.convert(dir, out [, {name =, source =, licence =, dtype = "float32" | "float64"}]) -> info
      dir may be the directory holding the three files or a dataset directory with them in raw/ or extracted/;
      name/source/licence default to the provenance of the known datasets (README of ../shared/data), else name =
      the dataset directory's name. info = {file, name, dir, bags, instances, dim, positives}
  mil.files_dir(dir) -> the directory that holds data.csv, bagids.csv and labels.csv (dir, dir/extracted or
      dir/raw), or nil
  mil.find(data_dir) -> list of {name =, dir =} of the MIL datasets under data_dir (known ones first, in the
      paper's order, then any other directory with the three files), or {} when none
  mil.default_data_dir() -> the shared data directory when it exists: $ROTLAB_DATA, ../shared/data or
      ../../shared/data (seen from the current directory), else nil
  mil.DATASETS -- provenance of the known datasets; mil.ORDER -- their order in tables
  mil.main(argv) -> exit code of `rotlab convert mil DIR OUT.h5 [options]`
Standardisation is not done here: the values are stored as read; experiments standardise with statistics of the
training fold (ds:feature_stats(indices), rl.nn.Standardize(mean, std)).
]]
local core = require "rotlab.core"

local mil = {}

mil.read = core.mil_read

local MILDATASETS = "MilDatasets.jl (github.com/marekdedic/MilDatasets.jl, commit e30d25cdec19, data/%s/{data,bagids,"
  .. "labels}.csv), originally from miproblems.org (Cheplygina & Tax); %s"
local MILDATASETS_LICENCE = "no licence file in MilDatasets.jl (its CITATION.cff asks to cite Dedic, ITAT 2020); "
  .. "cite the original authors: %s"
local MUSK_ORIGIN = "Musk: Dietterich, Lathrop & Lozano-Perez 1997, UCI Machine Learning Repository (CC BY 4.0)"
local FTE_ORIGIN = "Corel/Blobworld features of Andrews, Tsochantaridis & Hofmann, NIPS 2002"

mil.DATASETS = {
  Musk1 = { source = MILDATASETS:format("Musk1", MUSK_ORIGIN), licence = MILDATASETS_LICENCE:format(MUSK_ORIGIN) },
  Musk2 = {
    source = "MILSurvey (github.com/macarbonneau/MILSurvey, commit c612d614d945, Datasets/Musk/Musk2.mat), arrays "
      .. "extracted to the MilDatasets.jl CSV layout; features z-scored per feature (ddof = 1) over all instances; "
      .. MUSK_ORIGIN,
    licence = "CRAPL v0 beta 1 (the MILSurvey repository), which asks to cite the original authors: " .. MUSK_ORIGIN,
  },
  Elephant = { source = MILDATASETS:format("Elephant", FTE_ORIGIN), licence = MILDATASETS_LICENCE:format(FTE_ORIGIN) },
  Fox = { source = MILDATASETS:format("Fox", FTE_ORIGIN), licence = MILDATASETS_LICENCE:format(FTE_ORIGIN) },
  Tiger = { source = MILDATASETS:format("Tiger", FTE_ORIGIN), licence = MILDATASETS_LICENCE:format(FTE_ORIGIN) },
}
-- The order of the ROTP paper's Table 1 (Ilse et al. 2018 likewise).
mil.ORDER = { "Musk1", "Musk2", "Fox", "Tiger", "Elephant" }
-- Subdirectories of a dataset directory that may hold the three files, in order of preference.
mil.SUBDIRS = { "", "extracted", "raw" }

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function join(a, b)
  if b == "" then return a end
  return (a:gsub("/+$", "")) .. "/" .. b
end

function mil.files_dir(dir)
  for _, sub in ipairs(mil.SUBDIRS) do
    local d = join(dir, sub)
    if exists(join(d, "data.csv")) and exists(join(d, "bagids.csv")) and exists(join(d, "labels.csv")) then
      return d
    end
  end
  return nil
end

-- The dataset's name from its directory: the last component that is not raw/extracted.
local function dataset_name(dir)
  local parts = {}
  for p in dir:gmatch("[^/]+") do parts[#parts + 1] = p end
  for i = #parts, 1, -1 do
    if parts[i] ~= "raw" and parts[i] ~= "extracted" and parts[i] ~= "." then return parts[i] end
  end
  return dir
end

function mil.default_data_dir()
  local env = os.getenv("ROTLAB_DATA")
  if env and env ~= "" then return env end
  for _, d in ipairs { "../shared/data", "../../shared/data" } do
    if exists(join(d, "README.md")) or mil.files_dir(join(d, "Musk1")) then return d end
  end
  return nil
end

function mil.find(data_dir)
  local found, seen = {}, {}
  for _, name in ipairs(mil.ORDER) do
    local d = mil.files_dir(join(data_dir, name))
    if d then
      found[#found + 1] = { name = name, dir = d }
      seen[name] = true
    end
  end
  local p = io.popen("ls -1 '" .. data_dir:gsub("'", "'\\''") .. "' 2>/dev/null")
  local others = {}
  if p then
    for entry in p:lines() do
      if not seen[entry] then
        local d = mil.files_dir(join(data_dir, entry))
        if d then others[#others + 1] = { name = entry, dir = d } end
      end
    end
    p:close()
  end
  table.sort(others, function(a, b) return a.name < b.name end)
  for _, o in ipairs(others) do found[#found + 1] = o end
  return found
end

function mil.convert(dir, out, opts)
  if type(dir) ~= "string" or dir == "" then
    error(("bad argument #1 to 'convert' (expected a directory name, got %s)"):format(type(dir)), 2)
  end
  if type(out) ~= "string" or out == "" then
    error(("bad argument #2 to 'convert' (expected an output file name, got %s)"):format(type(out)), 2)
  end
  opts = opts or {}
  local files = mil.files_dir(dir) or dir -- a directory without the files: the C reader names the missing one
  local name = opts.name or dataset_name(files)
  local known = mil.DATASETS[name] or {}
  local info = core.mil_convert(files, out, { name = name, source = opts.source or known.source,
    licence = opts.licence or known.licence, dtype = opts.dtype })
  info.name, info.dir = name, files
  return info
end

local usage = [[
usage: rotlab convert mil DIR OUT.h5 [--name NAME] [--source TEXT] [--licence TEXT] [--dtype float32|float64]
Converts a MIL dataset in the text layout of ../shared/data (README sections 1-2: feature-major TAB-separated
data.csv, bagids.csv with contiguous 1-based bag ids, labels.csv with the bag label of each instance) into rotlab's
HDF5 dataset format: /X (instances x features), /offsets (bags + 1), /y (bags), attributes num_classes = 2, name,
source, licence, kind = "mil", converted_from. DIR is the directory with the three files, or a dataset directory
holding them in raw/ or extracted/. Every count is validated; an error names the file, line and column.
The values are stored as read (no standardisation: experiments standardise with training-fold statistics).
  --name NAME      dataset name (default: the dataset directory's name)
  --source TEXT    provenance (default: known for Musk1, Musk2, Elephant, Fox, Tiger)
  --licence TEXT   licence / terms (default: known for those datasets)
  --dtype T        storage type of /X: float32 (default, DESIGN section 5) or float64
Exit code 0, or 2 with a message.]]
mil.USAGE = usage

function mil.main(argv)
  -- argv = {"convert", "mil", DIR, OUT, options...}
  local pos, opts = {}, {}
  local names = { ["--name"] = "name", ["--source"] = "source", ["--licence"] = "licence", ["--dtype"] = "dtype" }
  local i = 3
  while i <= #argv do
    local a = argv[i]
    if a == "--help" or a == "-h" then
      print(usage)
      return 0
    end
    local flag, value = a:match("^(%-%-[%w_-]+)=(.*)$")
    flag = flag or a
    if names[flag] then
      if value == nil then
        i = i + 1
        value = argv[i]
      end
      if value == nil or value == "" then
        io.stderr:write(("rotlab convert mil: option %s needs a value\n%s\n"):format(flag, usage))
        return 2
      end
      opts[names[flag]] = value
    elseif a:match("^%-") then
      io.stderr:write(("rotlab convert mil: unknown option '%s'\n%s\n"):format(a, usage))
      return 2
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  if #pos ~= 2 then
    io.stderr:write(("rotlab convert mil: expected DIR and OUT.h5, got %d argument(s)\n%s\n"):format(#pos, usage))
    return 2
  end
  local ok, info = pcall(mil.convert, pos[1], pos[2], opts)
  if not ok then
    -- the binding's messages carry the Lua caller's position: not useful on a command line
    io.stderr:write("rotlab convert mil: ", (tostring(info):gsub("^[^:\n]*%.lua:%d+: ", "")), "\n")
    return 2
  end
  print(("%s: %d bags (%d positive, %d negative), %d instances x %d features -> %s"):format(info.name, info.bags,
    info.positives, info.bags - info.positives, info.instances, info.dim, info.file))
  return 0
end

return mil
