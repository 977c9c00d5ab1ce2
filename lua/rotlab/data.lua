--[[
rotlab.data -- datasets of sets in HDF5 (DESIGN section 5), splits, k-fold and mini-batches, plus generic HDF5
access as `data.h5` (also `rl.h5`). The work is done in C (core/data, lua/bind_data.c); this file names it.
All indices are 1-based Lua lists; labels, offsets and folds are returned as stored (0-based).

  local ds = rl.data.load(path)            -- validated; errors name the file and the field
  ds:size() ds:dim() ds:rows() ds:num_classes() ds:labels() ds:set_sizes() ds:offsets() ds:attrs()
  ds:folds() (nil without /fold) ds:group_offsets() (nil without /group_offsets) ds:values() ds:file()
  local batch, y = ds:batch(indices)       -- rl.sets(values, offsets), tensor of B labels
  ds:close()                               -- or `local ds <close> = rl.data.load(path)`
  rl.data.write(path, {X =, offsets =, y = [, group_offsets =, fold =, attrs =, dtype =]})
  rl.data.split(labels_or_count [, {train =, val =, test =, seed =, stratify =, rng =}]) -> {train =, val =, test =}
  rl.data.kfold(labels_or_count, k [, {seed =, stratified =, rng =}]) -> {{train =, test =}, ...}
  rl.data.batches(indices, batch_size [, {seed =, shuffle =, drop_last =, rng =}]) -> {{...}, ...}

  rl.h5.read(file, path) -> tensor            rl.h5.read_int(file, path) -> list, shape
  rl.h5.list(file [, group]) -> {{name =, kind =}, ...}
  rl.h5.attrs(file [, path]) -> {name = value}  rl.h5.exists(file, path) -> boolean
  rl.h5.write(file, path, data [, {type =, truncate =}])  rl.h5.write_attrs(file, path, attrs)
  rl.h5.create_group(file, path)
]]
local core = require "rotlab.core"

local data = {
  load = core.data_load,
  write = core.data_write,
  split = core.data_split,
  kfold = core.data_kfold,
  batches = core.data_batches,
}

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
