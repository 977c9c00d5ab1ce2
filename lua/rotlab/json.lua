--[[
rotlab.json -- canonical JSON for config hashing and trace vectors, a decoder, and a stable hash.
  json.encode(value) -> string  canonical: object keys sorted (byte order), integers without a decimal point,
                                floats in the shortest of %.15g/%.16g/%.17g that reads back to the same double,
                                NaN/Inf/-Inf as the strings "nan"/"inf"/"-inf", sequences (keys 1..n) as arrays,
                                the empty table as [], json.null as null. No whitespace.
  json.decode(string) -> value  null -> json.null; numbers -> integer when written without fraction/exponent
                                and representable, else float. Strict: trailing text is an error.
  json.hash(string) -> 16 hex digits: FNV-1a 64 of the bytes (stable across runs, machines and builds).
  json.null                     the null sentinel
Errors say what is wrong and where (path of the offending value, or byte position in the input).
]]
local json = {}

-- Nesting deeper than this is refused (a guard against cycles the seen-set misses and runaway input).
local MAX_DEPTH = 200

json.null = setmetatable({}, { __tostring = function() return "null" end, __name = "json.null" })

------------------------------------------------------------------------------------------------- encode

local escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n",
  ["\r"] = "\\r", ["\t"] = "\\t" }

local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c) return escapes[c] or ("\\u%04x"):format(c:byte()) end) .. '"'
end

-- Shortest decimal that reads back to the same double (deterministic, hence canonical).
local function encode_float(x)
  if x ~= x then return '"nan"' end
  if x == math.huge then return '"inf"' end
  if x == -math.huge then return '"-inf"' end
  for _, fmt in ipairs { "%.15g", "%.16g" } do
    local s = fmt:format(x)
    if tonumber(s) == x then return s end
  end
  return ("%.17g"):format(x)
end

local function encode_number(x)
  if math.type(x) == "integer" then return ("%d"):format(x) end
  return encode_float(x)
end

-- "config.layers[2]" from the stack of keys being encoded
local function path_of(stack)
  local parts = { "value" }
  for _, k in ipairs(stack) do
    parts[#parts + 1] = type(k) == "number" and ("[%d]"):format(k) or ("." .. tostring(k))
  end
  return table.concat(parts)
end

local encode_value

-- Classifies a table: "array" (keys exactly 1..n, n >= 0) or "object" (all keys strings); errors otherwise.
local function table_kind(t, stack)
  local n, strings, others = 0, 0, nil
  for k in pairs(t) do
    if type(k) == "string" then strings = strings + 1
    elseif math.type(k) == "integer" and k >= 1 then n = n + 1
    else others = k end
  end
  if others ~= nil or (strings > 0 and n > 0) then
    error(("json.encode: %s has keys that are neither all strings nor a sequence 1..n (key %s)"):format(
      path_of(stack), tostring(others or next(t))), 0)
  end
  if strings > 0 then return "object" end
  if n ~= #t or (n > 0 and t[n] == nil) then
    error(("json.encode: %s is not a sequence (integer keys with holes)"):format(path_of(stack)), 0)
  end
  for i = 1, n do
    if t[i] == nil then error(("json.encode: %s is not a sequence (hole at %d)"):format(path_of(stack), i), 0) end
  end
  return "array"
end

function encode_value(v, out, stack, seen)
  local tv = type(v)
  if v == json.null then out[#out + 1] = "null"
  elseif tv == "string" then out[#out + 1] = encode_string(v)
  elseif tv == "number" then out[#out + 1] = encode_number(v)
  elseif tv == "boolean" then out[#out + 1] = v and "true" or "false"
  elseif tv == "table" then
    if seen[v] then error(("json.encode: %s is a cycle (a table containing itself)"):format(path_of(stack)), 0) end
    if #stack >= MAX_DEPTH then error(("json.encode: %s nests deeper than %d"):format(path_of(stack), MAX_DEPTH), 0) end
    seen[v] = true
    if table_kind(v, stack) == "array" then
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        stack[#stack + 1] = i
        encode_value(v[i], out, stack, seen)
        stack[#stack] = nil
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = k end
      table.sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = encode_string(k)
        out[#out + 1] = ":"
        stack[#stack + 1] = k
        encode_value(v[k], out, stack, seen)
        stack[#stack] = nil
      end
      out[#out + 1] = "}"
    end
    seen[v] = nil
  else
    error(("json.encode: %s is a %s (expected string, number, boolean, table or json.null)"):format(
      path_of(stack), tv), 0)
  end
end

function json.encode(v)
  local out = {}
  encode_value(v, out, {}, {})
  return table.concat(out)
end

------------------------------------------------------------------------------------------------- decode

local function decode_error(s, pos, what)
  local near = s:sub(pos, pos + 15)
  error(("json.decode: %s at position %d%s"):format(what, pos, near ~= "" and (" near '" .. near .. "'") or ""), 0)
end

local function skip(s, pos)
  return s:find("[^ \t\r\n]", pos) or #s + 1
end

local decode_value

local unescape = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

local function decode_string(s, pos) -- pos at the opening quote
  local parts, i = {}, pos + 1
  while true do
    local j = s:find('["\\%c]', i)
    if not j then decode_error(s, pos, "unterminated string") end
    parts[#parts + 1] = s:sub(i, j - 1)
    local c = s:sub(j, j)
    if c == '"' then return table.concat(parts), j + 1 end
    if c ~= "\\" then decode_error(s, j, "control character in string") end
    local e = s:sub(j + 1, j + 1)
    if unescape[e] then
      parts[#parts + 1] = unescape[e]
      i = j + 2
    elseif e == "u" then
      local hex = s:match("^%x%x%x%x", j + 2)
      if not hex then decode_error(s, j, "bad \\u escape") end
      local cp = tonumber(hex, 16)
      i = j + 6
      if cp >= 0xD800 and cp <= 0xDBFF then -- high surrogate: needs its low half
        local lo = s:match("^\\u(%x%x%x%x)", i)
        local lcp = lo and tonumber(lo, 16)
        if not lcp or lcp < 0xDC00 or lcp > 0xDFFF then decode_error(s, j, "unpaired surrogate in \\u escape") end
        cp = 0x10000 + (cp - 0xD800) * 0x400 + (lcp - 0xDC00)
        i = i + 6
      elseif cp >= 0xDC00 and cp <= 0xDFFF then
        decode_error(s, j, "unpaired surrogate in \\u escape")
      end
      parts[#parts + 1] = utf8.char(cp)
    else
      decode_error(s, j, "bad escape")
    end
  end
end

local function decode_number(s, pos)
  local int = s:match("^-?%d+", pos)
  if not int or int:match("^-?0%d") then decode_error(s, pos, "bad number") end
  local p = pos + #int
  local frac = s:match("^%.%d+", p)
  if frac then p = p + #frac elseif s:sub(p, p) == "." then decode_error(s, pos, "bad number") end
  local exp = s:match("^[eE][-+]?%d+", p)
  if exp then p = p + #exp elseif s:match("^[eE]", p) then decode_error(s, pos, "bad number") end
  return tonumber(s:sub(pos, p - 1)), p
end

function decode_value(s, pos, depth)
  if depth > MAX_DEPTH then decode_error(s, pos, ("nesting deeper than %d"):format(MAX_DEPTH)) end
  pos = skip(s, pos)
  local c = s:sub(pos, pos)
  if c == "{" then
    local obj = {}
    pos = skip(s, pos + 1)
    if s:sub(pos, pos) == "}" then return obj, pos + 1 end
    while true do
      if s:sub(pos, pos) ~= '"' then decode_error(s, pos, "expected a string key") end
      local k
      k, pos = decode_string(s, pos)
      pos = skip(s, pos)
      if s:sub(pos, pos) ~= ":" then decode_error(s, pos, "expected ':'") end
      obj[k], pos = decode_value(s, pos + 1, depth + 1)
      pos = skip(s, pos)
      local d = s:sub(pos, pos)
      if d == "}" then return obj, pos + 1 end
      if d ~= "," then decode_error(s, pos, "expected ',' or '}'") end
      pos = skip(s, pos + 1)
    end
  elseif c == "[" then
    local arr, n = {}, 0
    pos = skip(s, pos + 1)
    if s:sub(pos, pos) == "]" then return arr, pos + 1 end
    while true do
      n = n + 1
      arr[n], pos = decode_value(s, pos, depth + 1)
      pos = skip(s, pos)
      local d = s:sub(pos, pos)
      if d == "]" then return arr, pos + 1 end
      if d ~= "," then decode_error(s, pos, "expected ',' or ']'") end
      pos = pos + 1
    end
  elseif c == '"' then
    return decode_string(s, pos)
  elseif c == "-" or c:match("%d") then
    return decode_number(s, pos)
  elseif s:sub(pos, pos + 3) == "true" then return true, pos + 4
  elseif s:sub(pos, pos + 4) == "false" then return false, pos + 5
  elseif s:sub(pos, pos + 3) == "null" then return json.null, pos + 4
  end
  decode_error(s, pos, c == "" and "unexpected end of input" or "unexpected character")
end

function json.decode(s)
  if type(s) ~= "string" then error(("json.decode: expected a string, got %s"):format(type(s)), 0) end
  local v, pos = decode_value(s, 1, 0)
  pos = skip(s, pos)
  if pos <= #s then decode_error(s, pos, "trailing characters after the value") end
  return v
end

------------------------------------------------------------------------------------------------- hash

-- FNV-1a 64 (offset basis 0xcbf29ce484222325, prime 0x100000001b3); Lua integers wrap modulo 2^64.
function json.hash(s)
  if type(s) ~= "string" then error(("json.hash: expected a string, got %s"):format(type(s)), 0) end
  local h = 0xcbf29ce484222325
  for i = 1, #s do h = (h ~ s:byte(i)) * 0x100000001b3 end
  return ("%016x"):format(h)
end

return json
