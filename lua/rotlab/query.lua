--[[
rotlab.query -- `rotlab query DB "SQL" [--format text|csv|json]`: one read-only SQL statement on a results DB.
  query.run(db_path, sql) -> columns, rows   rows[i][j] is the value of column j (nil for NULL)
  query.render(columns, rows, format) -> text
  query.main(argv) -> exit code (0; 2 with a message on stderr for a missing DB, bad SQL, a write, bad options)
The DB is opened read-only (PRAGMA query_only): a statement that writes is refused. Formats: text (aligned
columns, NULL shown as NULL), csv (RFC 4180, CRLF, NULL as an empty field, floats at full precision), json (an
array of objects, NULL as null).
]]
local results = require "db.results"
local json = require "rotlab.json"

local query = {}

local usage = [[
usage: rotlab query DB "SQL" [--format text|csv|json]
Runs one SQL statement on the results DB (read-only: statements that write are refused) and prints the rows.
The tables (experiment, run, param, metric, trace, artifact) are described in README.md, "Results database".
  --format F   text (default, aligned columns), csv (RFC 4180) or json (array of objects)
Example: rotlab query results/grid.db "SELECT status, count(*) AS n FROM run GROUP BY status"]]

local FORMATS = { text = true, csv = true, json = true }

function query.run(db_path, sql)
  local f = io.open(db_path, "rb")
  if not f then error(("no such results DB: '%s'"):format(db_path), 0) end
  f:close()
  local store <close> = results.open(db_path, { readonly = true })
  local st <close> = store.db:prepare(sql)
  local columns = st:columns()
  local rows = {}
  while true do
    local r = st:step()
    if not r then break end
    local row = {}
    for j, c in ipairs(columns) do row[j] = r[c] end
    rows[#rows + 1] = row
  end
  return columns, rows
end

local function cell(v, null)
  if v == nil then return null end
  if math.type(v) == "integer" then return ("%d"):format(v) end
  if type(v) == "number" then
    if v == math.huge then return "inf" end
    if v == -math.huge then return "-inf" end
    return json.encode(v)
  end
  return tostring(v)
end

local function csv_field(s)
  if s:find('[,"\r\n]') then return '"' .. s:gsub('"', '""') .. '"' end
  return s
end

function query.render(columns, rows, format)
  local out = {}
  if format == "json" then
    local list = {}
    for i, row in ipairs(rows) do
      local o = {}
      for j, c in ipairs(columns) do
        local v = row[j]
        if v == nil then v = json.null elseif v == math.huge then v = "inf" elseif v == -math.huge then v = "-inf" end
        o[c] = v
      end
      list[i] = o
    end
    return (#list == 0 and "[]" or json.encode(list)) .. "\n"
  end
  if format == "csv" then
    local function line(cells)
      for i, c in ipairs(cells) do cells[i] = csv_field(c) end
      out[#out + 1] = table.concat(cells, ",") .. "\r\n"
    end
    local head = {}
    for j, c in ipairs(columns) do head[j] = c end
    line(head)
    for _, row in ipairs(rows) do
      local cells = {}
      for j = 1, #columns do cells[j] = cell(row[j], "") end
      line(cells)
    end
    return table.concat(out)
  end
  local body, width = {}, {}
  for j, c in ipairs(columns) do width[j] = utf8.len(c) or #c end
  for i, row in ipairs(rows) do
    local cells = {}
    for j = 1, #columns do
      cells[j] = cell(row[j], "NULL"):gsub("[\r\n]", " ")
      width[j] = math.max(width[j], utf8.len(cells[j]) or #cells[j])
    end
    body[i] = cells
  end
  local function line(cells)
    local p = {}
    for j, c in ipairs(cells) do p[j] = c .. (" "):rep(width[j] - (utf8.len(c) or #c)) end
    out[#out + 1] = (table.concat(p, "  "):gsub("%s+$", "")) .. "\n"
  end
  line(columns)
  local dashes = {}
  for j = 1, #columns do dashes[j] = ("-"):rep(width[j]) end
  out[#out + 1] = table.concat(dashes, "  ") .. "\n"
  for _, cells in ipairs(body) do line(cells) end
  out[#out + 1] = ("(%d row%s)\n"):format(#rows, #rows == 1 and "" or "s")
  return table.concat(out)
end

function query.main(argv)
  local format, words = "text", {}
  local i = 2
  while i <= #argv do
    local a = argv[i]
    if a == "--help" or a == "-h" then
      print(usage)
      return 0
    end
    local flag, value = a:match("^(%-%-[%w_-]+)=(.*)$")
    if a == "--format" or flag == "--format" then
      if not value then
        i = i + 1
        value = argv[i]
      end
      if not value or not FORMATS[value] then
        io.stderr:write(("rotlab query: option --format: expected text, csv or json, got '%s'\n"):format(
          tostring(value)))
        return 2
      end
      format = value
    elseif a:match("^%-%-") then
      io.stderr:write(("rotlab query: unknown option '%s'\n%s\n"):format(a, usage))
      return 2
    else
      words[#words + 1] = a
    end
    i = i + 1
  end
  if #words ~= 2 then
    io.stderr:write(("rotlab query: expected DB and one SQL statement, got %d argument(s)\n%s\n"):format(#words,
      usage))
    return 2
  end
  local ok, columns, rows = pcall(query.run, words[1], words[2])
  if not ok then
    io.stderr:write("rotlab query: ", (tostring(columns):gsub("^[^:\n]*%.lua:%d+: ", "")), "\n")
    return 2
  end
  io.write(query.render(columns, rows, format))
  return 0
end

return query
