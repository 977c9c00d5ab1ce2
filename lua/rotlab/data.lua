--[[
rotlab.data -- datasets of sets in HDF5 (DESIGN section 5), splits, k-fold and mini-batches, plus generic HDF5
access as `data.h5` (also `rl.h5`). The work is done in C (core/data, lua/bind_data.c); this file names it.

  rl.h5.read(file, path) -> tensor            rl.h5.read_int(file, path) -> list, shape
  rl.h5.list(file [, group]) -> {{name=, kind=}, ...}
  rl.h5.attrs(file [, path]) -> {name = value}  rl.h5.exists(file, path) -> boolean
  rl.h5.write(file, path, data [, {type=, truncate=}])  rl.h5.write_attrs(file, path, attrs)
  rl.h5.create_group(file, path)
]]
local core = require "rotlab.core"

local data = {}

data.h5 = {
  read = core.h5_read,
  read_int = core.h5_read_int,
  list = core.h5_list,
  attrs = core.h5_attrs,
  exists = core.h5_exists,
  write = core.h5_write,
  write_attrs = core.h5_write_attrs,
  create_group = core.h5_create_group,
}

return data
