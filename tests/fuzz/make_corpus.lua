-- tests/fuzz/make_corpus.lua -- writes the seed corpora of the fuzz targets (run from the repository root):
--   build/bin/rotlab run tests/fuzz/make_corpus.lua [out=tests/fuzz/corpus]
-- h5/: small valid dataset files written by rotlab itself (rl.data.write), plus one chunked + gzip file written by
-- h5py when it is installed (HDF5's chunk index and filter paths). mil/: valid MIL directories packed the way
-- fuzz_mil.c splits its input: data.csv, NUL, bagids.csv, NUL, labels.csv. The committed files are its output.
local rl = require "rotlab"
local args = ...
local out = (args and args.out) or "tests/fuzz/corpus"

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- 6 rows x 2 in 3 sets (sizes 2, 1, 3), 2 groups, folds, root attributes of every kind the reader knows
local X = rl.tensor{ { 0.5, -1 }, { 2, 3.25 }, { -0.125, 4 }, { 1e-3, 7 }, { 6, -2 }, { 0, 1 } }
rl.data.write(out .. "/h5/full32.h5", { X = X, offsets = { 0, 2, 3, 6 }, y = { 1, 0, 2 },
  group_offsets = { 0, 1, 3 }, fold = { 0, 1, 0 }, dtype = "float32",
  attrs = { num_classes = 3, backbone = "resnet18", scale = 0.5, flag = true, dims = { 2, 3 } } })
-- the minimum: one set of one row, float64, no optional field
rl.data.write(out .. "/h5/min64.h5", { X = rl.tensor{ { 1.5 } }, offsets = { 0, 1 }, y = { 0 }, dtype = "float64" })

local py = ([[
import h5py, numpy as np
with h5py.File(%q, "w") as f:
    f.create_dataset("X", data=np.arange(40, dtype="f4").reshape(10, 4), chunks=(4, 4), compression="gzip", shuffle=True)
    f["offsets"] = np.array([0, 3, 10], dtype="i8"); f["y"] = np.array([0, 1], dtype="i4")
    f.attrs["num_classes"] = 2
]]):format(out .. "/h5/chunked_gzip.h5")
local tmp = os.tmpname()
write(tmp, py)
if not os.execute("/usr/bin/python3 " .. tmp .. " 2>/dev/null") then io.stderr:write("make_corpus: no h5py, skipped chunked_gzip.h5\n") end
os.remove(tmp)

-- MIL: 3 features x 7 instances in bags of sizes 2, 1, 4 (labels 1, 0, 1); one with CRLF and no final line end
local data = "1\t42\t3\t0.25\t-0\t5\t8\n-2.5\t1e-05\t0\t1.5e3\t2\t6\t9\n0.5\t-2.5E+2\t7\t-1\t3\t7\t.001\n"
local bagids = "1\n1\n2\n3\n3\n3\n3\n"
local labels = "1\n1\n0\n1\n1\n1\n1\n"
write(out .. "/mil/bags3.txt", data .. "\0" .. bagids .. "\0" .. labels)
write(out .. "/mil/crlf.txt", "1\t2\r\n3\t4" .. "\0" .. "1\r\n1" .. "\0" .. "0\r\n0")
write(out .. "/mil/one.txt", "7\0" .. "1\0" .. "1\n")
print("make_corpus: wrote " .. out .. "/h5 and " .. out .. "/mil")
