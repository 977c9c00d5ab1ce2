--[[
experiments/make_digits.lua -- builds the shipped default data from the UCI digits (scikit-learn's copy):
  build/bin/rotlab run experiments/make_digits.lua out=build/data [data=../shared/data] [seed=0] [bags=600]
    [build=build]

Source: <data>/sklearn-digits/raw/digits.csv.gz (1797 lines x 65 integers: 64 pixels 0..16 row-major, then the
class 0..9). Without `data`, or when the file is missing there, the file is taken from Debian's python3-sklearn
package without installing it (`apt-get download python3-sklearn` into <build>/, then `dpkg-deb -x`).

Writes (seeded, reproducible):
  <out>/digit_bags.h5    MIL bags after Ilse et al. 2018 (the MNIST-bags protocol): instances are images scaled
                         to [0, 1] (pixel / 16, 64-d); bag size round(N(10, 2)) clamped to >= 2; images drawn
                         uniformly at random with replacement; label 1 iff the bag contains a 9; 600 bags.
  <out>/digit_points.h5  every image as a set of points (row / 7, col / 7, intensity / 16) of its non-zero pixels;
                         1797 sets, 10 classes.
]]
local rl = require "rotlab"

local params = ... or {}
local out = params.out or "build/data"
local build = params.build or "build"
local seed = params.seed or 0
local nbags = params.bags or 600

-- Ilse et al. 2018 MNIST-bags settings
local BAG_MEAN, BAG_STD, BAG_MIN, TARGET_DIGIT = 10, 2, 2, 9
local EXPECTED_ROWS = 1797
local EXPECTED_COUNTS = { 178, 182, 177, 183, 181, 182, 181, 179, 174, 180 } -- classes 0..9 (sklearn digits.rst)
local PACKAGE_PATH = "usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz"

local function fail(fmt, ...)
  error("make_digits: " .. fmt:format(...), 0)
end

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function readable(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function run(cmd)
  local ok = os.execute(cmd)
  if not ok then fail("command failed: %s", cmd) end
end

-- The source file: <data>/sklearn-digits/raw/digits.csv.gz, else extracted from the Debian package.
local function source_file()
  if params.data then
    local p = params.data .. "/sklearn-digits/raw/digits.csv.gz"
    if readable(p) then return p, "data directory" end
    io.stderr:write(("make_digits: %s not found; using Debian's python3-sklearn instead\n"):format(p))
  end
  local root = build .. "/sklearn-deb"
  local p = root .. "/" .. PACKAGE_PATH
  if readable(p) then return p, "python3-sklearn (already extracted)" end
  run("mkdir -p " .. quote(root))
  local log = build .. "/apt-download.log"
  if not os.execute(("cd %s && apt-get download python3-sklearn > apt-download.log 2>&1"):format(quote(build))) then
    local f = io.open(log)
    fail("apt-get download python3-sklearn failed in %s:\n%s", build, f and f:read("a") or "(no log)")
  end
  local ls = io.popen(("ls -t %s/python3-sklearn_*.deb 2>/dev/null"):format(quote(build)))
  local deb = ls:read("l")
  ls:close()
  if not deb then fail("apt-get download python3-sklearn produced no .deb in %s", build) end
  run(("dpkg-deb -x %s %s"):format(quote(deb), quote(root)))
  if not readable(p) then fail("%s does not contain %s", deb, PACKAGE_PATH) end
  return p, "python3-sklearn (" .. deb .. ")"
end

local function sha256(path)
  local h = io.popen("sha256sum " .. quote(path) .. " 2>/dev/null")
  local line = h and h:read("l")
  if h then h:close() end
  return line and line:match("^(%x+)") or "unknown"
end

-- Reads the gzip'd CSV: images[i] = {64 pixels}, classes[i] = 0..9.
local function read_digits(path)
  local pipe = io.popen("gzip -dc " .. quote(path))
  if not pipe then fail("cannot run gzip on %s", path) end
  local images, classes, counts = {}, {}, {}
  for c = 0, 9 do counts[c] = 0 end
  local n = 0
  for line in pipe:lines() do
    n = n + 1
    local v = {}
    for field in line:gmatch("[^,]+") do v[#v + 1] = math.tointeger(tonumber(field)) end
    if #v ~= 65 then fail("%s line %d: expected 65 comma-separated integers, got %d fields", path, n, #v) end
    for k = 1, 65 do
      if v[k] == nil then fail("%s line %d, field %d is not an integer", path, n, k) end
      if k <= 64 and (v[k] < 0 or v[k] > 16) then fail("%s line %d: pixel %d is %d, expected 0..16", path, n, k, v[k]) end
    end
    local c = v[65]
    if c < 0 or c > 9 then fail("%s line %d: class %d, expected 0..9", path, n, c) end
    v[65] = nil
    images[n], classes[n] = v, c
    counts[c] = counts[c] + 1
  end
  local ok = pipe:close()
  if not ok then fail("gzip -dc %s failed (corrupt or not gzip?)", path) end
  if n ~= EXPECTED_ROWS then fail("%s has %d rows, expected %d", path, n, EXPECTED_ROWS) end
  for c = 0, 9 do
    if counts[c] ~= EXPECTED_COUNTS[c + 1] then
      local got, want = {}, {}
      for k = 0, 9 do got[#got + 1], want[#want + 1] = counts[k], EXPECTED_COUNTS[k + 1] end
      fail("%s: class counts %s differ from the expected %s (class %d)", path, table.concat(got, ","),
        table.concat(want, ","), c)
    end
  end
  return images, classes
end

local src, origin = source_file()
local images, classes = read_digits(src)
local common = {
  source = "UCI Optical Recognition of Handwritten Digits (Alpaydin & Kaynak 1998, test set), as shipped in " ..
    "scikit-learn's datasets/data/digits.csv.gz (Debian python3-sklearn)",
  source_sha256 = sha256(src),
  licence = "UCI data: CC BY 4.0 (cite Alpaydin & Kaynak 1998); scikit-learn's copy: BSD-3-Clause",
  seed = seed,
}
run("mkdir -p " .. quote(out))

-- (a) MIL bags
local g = rl.rng(seed)
local bag_images, offsets, y = {}, { 0 }, {}
local positives, rows = 0, 0
for b = 1, nbags do
  local size = math.max(BAG_MIN, math.floor(BAG_MEAN + BAG_STD * g:normal() + 0.5))
  local label = 0
  for _ = 1, size do
    local i = g:int(#images)
    bag_images[#bag_images + 1] = i
    if classes[i] == TARGET_DIGIT then label = 1 end
  end
  rows = rows + size
  offsets[b + 1] = rows
  y[b] = label
  positives = positives + label
end
local X = rl.zeros(rows, 64)
for r, i in ipairs(bag_images) do
  local img = images[i]
  for k = 1, 64 do X:set(r, k, img[k] / 16) end
end
local attrs = {
  protocol = ("MIL bags after Ilse et al. 2018 (MNIST-bags): bag size round(N(%g, %g)) clamped to >= %d, images " ..
    "uniform with replacement, label 1 iff the bag contains a %d; instances = pixels / 16 (64-d)"):format(
    BAG_MEAN, BAG_STD, BAG_MIN, TARGET_DIGIT),
  num_classes = 2,
  target_digit = TARGET_DIGIT,
  bag_mean = BAG_MEAN,
  bag_std = BAG_STD,
}
for k, v in pairs(common) do attrs[k] = v end
local bags_file = out .. "/digit_bags.h5"
rl.data.write(bags_file, { X = X, offsets = offsets, y = y, attrs = attrs, dtype = "float32" })
print(("%s: %d bags, %d positive (contain a %d), %d negative, mean size %.2f (%d instances x 64)"):format(
  bags_file, nbags, positives, TARGET_DIGIT, nbags - positives, rows / nbags, rows))

-- (b) point sets
local poffsets, py, prow = { 0 }, {}, 0
for i, img in ipairs(images) do
  for k = 1, 64 do
    if img[k] > 0 then prow = prow + 1 end
  end
  poffsets[i + 1] = prow
  py[i] = classes[i]
end
local P = rl.zeros(prow, 3)
local r = 0
for _, img in ipairs(images) do
  for k = 0, 63 do
    local v = img[k + 1]
    if v > 0 then
      r = r + 1
      P:set(r, 1, (k // 8) / 7)
      P:set(r, 2, (k % 8) / 7)
      P:set(r, 3, v / 16)
    end
  end
end
local pattrs = {
  protocol = "each 8x8 image as the set of its non-zero pixels, points (row / 7, col / 7, intensity / 16)",
  num_classes = 10,
}
for k, v in pairs(common) do pattrs[k] = v end
local points_file = out .. "/digit_points.h5"
rl.data.write(points_file, { X = P, offsets = poffsets, y = py, attrs = pattrs, dtype = "float32" })
print(("%s: %d sets, 10 classes, mean size %.2f points x 3 (%d points)"):format(points_file, #images,
  prow / #images, prow))
print(("source: %s (%s), sha256 %s"):format(src, origin, common.source_sha256))
return 0
