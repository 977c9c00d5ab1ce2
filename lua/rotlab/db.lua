--[[
rotlab.db -- rl.db: the results logger (db/results.lua, see there for the API) plus rl.db.sqlite, the thin SQLite
binding (rl.sqlite.open(path, {busy_timeout_ms, readonly, create}), lua/bind_db.c).
]]
local core = require "rotlab.core"
local results = require "db.results"

local M = {}
for k, v in pairs(results) do M[k] = v end
M.sqlite = { open = core.sqlite_open }
M.json = require "rotlab.json"

return M
