--[[
mailauth.lua: a Dovecot passdb and userdb that asks the mailauth daemon.

Dovecot 2.3.19 and later 2.3 releases (tested with 2.3.19.1). Dovecot 2.4 support
was written from the 2.4 sources and is not tested here; see docs/dovecot.md.

  passdb  auth_password_verify -> POST /v1/passdb, each result mapped 1:1 onto
          dovecot.auth.PASSDB_RESULT_*. A transport failure, an HTTP status other
          than 200 or an answer that cannot be parsed is INTERNAL_FAILURE, never
          PASSWORD_MISMATCH: Dovecot then answers from its (even expired) auth
          cache, or tells the client [UNAVAILABLE], and nobody is locked out.
  userdb  auth_userdb_lookup -> POST /v1/userdb.

Settings are read once per Lua state, on the first lookup rather than in
script_init(): the auth master (user `dovecot`) loads this script too, but with
blocking=yes (2.3) / use_worker=yes (2.4) only the auth-worker processes run
lookups. The settings file is, first match wins:
  1. Dovecot 2.4: lua_settings { config_file = PATH } in the passdb/userdb block;
  2. the MAILAUTH_LUA_CONFIG environment variable. Dovecot clears the environment
     of its processes, so it must be passed with
     import_environment = $import_environment MAILAUTH_LUA_CONFIG=PATH;
  3. CONFIG_FILE below.
The file holds `key = value` lines (# comments): url, token_file, timeout,
http_client. No secret lives in this script or in that file: the shared token
is read from token_file.
]]

local CONFIG_FILE = "/etc/mailauth/dovecot-lua.conf"

local cjson = require("cjson")

local SETTING_KEYS = { url = true, token_file = true, timeout = true, http_client = true }
local SETTING_DEFAULTS = { url = "http://127.0.0.1:9082", timeout = "8", http_client = "builtin" }
-- An auth-worker lookup that runs longer than 60 s is killed by Dovecot.
local MAX_TIMEOUT = 50
local MAX_REASON = 200

local init_args = {}
-- Dovecot 2.4 calls script_init with a table (its lua_settings); 2.3 with nothing.
local dovecot_24 = false
local settings = nil

local function auth() return dovecot.auth end

local function trim(s) return (s:match("^%s*(.-)%s*$")) end

local function read_file(path)
  local f, err = io.open(path, "r")
  if not f then return nil, err end
  local text = f:read("a")
  f:close()
  if not text then return nil, path .. ": read failed" end
  return text
end

local function parse_settings(text, origin)
  local raw = {}
  local n = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    line = trim(line)
    if line ~= "" and line:sub(1, 1) ~= "#" then
      local key, value = line:match("^([%w_]+)%s*=%s*(.-)$")
      if not key then
        return nil, string.format("%s line %d: expected key = value", origin, n)
      end
      if not SETTING_KEYS[key] then
        return nil, string.format("%s line %d: unknown key %q (known: url, token_file, timeout, http_client)", origin, n, key)
      end
      if raw[key] ~= nil then
        return nil, string.format("%s line %d: %s is set twice", origin, n, key)
      end
      raw[key] = value
    end
  end
  return raw
end

local function validate_settings(raw, origin)
  local s = {}
  local function get(key) return raw[key] or SETTING_DEFAULTS[key] end

  local url = get("url")
  local path = url:match("^unix:(/.+)$")
  if path then
    s.socket_path = path
    -- socket.http still wants an http URL; its host only fills the Host header.
    s.base_url = "http://localhost"
  elseif url:match("^http://[%w%.%-%[%]:]+/?$") then
    s.base_url = url:gsub("/$", "")
  else
    return nil, string.format("%s: url must be http://HOST:PORT or unix:/path/to/socket, got %q", origin, url)
  end

  local timeout = tonumber(get("timeout"))
  if not timeout or timeout <= 0 or timeout > MAX_TIMEOUT then
    return nil, string.format("%s: timeout must be a number of seconds above 0 and at most %d, got %q",
      origin, MAX_TIMEOUT, get("timeout"))
  end
  s.timeout = timeout

  local client = get("http_client")
  if client ~= "builtin" and client ~= "luasocket" and client ~= "dovecot" then
    return nil, string.format("%s: http_client must be builtin, luasocket or dovecot, got %q", origin, client)
  end
  if client == "dovecot" and s.socket_path then
    return nil, origin .. ": http_client = dovecot cannot use a unix: url; use builtin or an http:// url"
  end
  s.http_client = client

  s.headers = { ["content-type"] = "application/json", ["accept"] = "application/json" }
  if raw.token_file and raw.token_file ~= "" then
    local token, err = read_file(raw.token_file)
    if not token then
      return nil, string.format("%s: token_file: cannot read %s (%s)", origin, raw.token_file, tostring(err))
    end
    token = trim(token)
    if token == "" or token:find("[%c%s]") then
      return nil, string.format("%s: token_file %s is empty or holds more than one line", origin, raw.token_file)
    end
    s.headers["x-mailauth-token"] = token
  end
  return s
end

-- builtin: a small HTTP/1.1 client over a luasocket TCP or Unix socket that
-- keeps its one connection open between lookups. An auth-worker runs one lookup
-- at a time, so one connection per Lua state is all it needs; the connect (and
-- TCP handshake) leaves the hot path. It speaks exactly what the mailauth
-- daemon sends: a Content-Length body, no chunked encoding.
local function builtin_transport(s)
  local socket = require("socket")
  local unix = s.socket_path and require("socket.unix")
  local authority = s.socket_path and "localhost" or s.base_url:match("^http://(.+)$")
  local host, port = authority:match("^%[?(.-)%]?:(%d+)$")
  if not s.socket_path and not host then host, port = authority, "80" end
  local conn = nil

  local function open()
    local c, err
    if unix then c, err = unix.stream() else c, err = socket.tcp() end
    if not c then return nil, err end
    c:settimeout(s.timeout)
    local ok, cerr
    if unix then
      ok, cerr = c:connect(s.socket_path)
    else
      c:setoption("tcp-nodelay", true)
      ok, cerr = c:connect(host, tonumber(port))
    end
    if not ok then
      c:close()
      return nil, "connect: " .. tostring(cerr)
    end
    return c
  end

  local function exchange(c, request)
    local sent, serr = c:send(request)
    if not sent then return nil, serr end
    local line, lerr = c:receive("*l")
    if not line then return nil, lerr end
    local status = tonumber(line:match("^HTTP/1%.%d (%d%d%d)"))
    if not status then return nil, "malformed status line" end
    local length, close = nil, false
    while true do
      local h, herr = c:receive("*l")
      if not h then return nil, herr end
      if h == "" then break end
      local k, v = h:match("^([^:]+):%s*(.-)%s*$")
      if not k then return nil, "malformed header" end
      k = k:lower()
      if k == "content-length" then
        length = tonumber(v)
      elseif k == "connection" and v:lower():find("close", 1, true) then
        close = true
      elseif k == "transfer-encoding" then
        return nil, "unsupported transfer-encoding " .. v
      end
    end
    if not length or length < 0 or length > 1048576 then return nil, "missing or invalid content-length" end
    local body, berr = c:receive(length)
    if not body then return nil, berr end
    return status, body, close
  end

  return function(path, body, headers)
    local parts = { "POST ", path, " HTTP/1.1\r\nHost: ", authority, "\r\nContent-Length: ", tostring(#body), "\r\n" }
    for k, v in pairs(headers) do parts[#parts + 1] = k .. ": " .. v .. "\r\n" end
    parts[#parts + 1] = "\r\n"
    parts[#parts + 1] = body
    local request = table.concat(parts)
    -- A kept connection may have been closed by the server while idle: that
    -- (and only that) earns one more try on a fresh connection.
    for _ = 1, 2 do
      local fresh = false
      if not conn then
        local err
        conn, err = open()
        if not conn then return nil, err end
        fresh = true
      end
      local status, text, close = exchange(conn, request)
      if status then
        if close then
          conn:close()
          conn = nil
        end
        return status, text
      end
      conn:close()
      conn = nil
      if fresh or text ~= "closed" then return nil, text end
    end
  end
end

-- luasocket: socket.http, a new connection per lookup (it has no keep-alive).
local function luasocket_transport(s)
  local http = require("socket.http")
  local ltn12 = require("ltn12")
  http.TIMEOUT = s.timeout
  local create = nil
  if s.socket_path then
    local unix = require("socket.unix")
    create = function()
      local sock, err = unix.stream()
      if not sock then return nil, err end
      -- socket.http calls connect(host, port) from the URL; aim it at the socket instead.
      return setmetatable({
        connect = function(_) return sock:connect(s.socket_path) end,
      }, {
        __index = function(_, key)
          local member = sock[key]
          if type(member) ~= "function" then return member end
          return function(_, ...) return member(sock, ...) end
        end,
      })
    end
  end
  return function(path, body, headers)
    local out = {}
    local request_headers = { ["content-length"] = tostring(#body) }
    for k, v in pairs(headers) do request_headers[k] = v end
    local ok, status = http.request({
      url = s.base_url .. path,
      method = "POST",
      create = create,
      headers = request_headers,
      source = ltn12.source.string(body),
      sink = ltn12.sink.table(out),
    })
    if not ok then return nil, tostring(status) end
    return status, table.concat(out)
  end
end

-- dovecot: Dovecot's own HTTP client (2.3.19+), made once per Lua state so it
-- keeps its connection alive. submit() blocks until the answer is in. TCP only,
-- and give an IP address: the auth-worker cannot resolve names through it.
local function dovecot_transport(s)
  local msecs = math.floor(s.timeout * 1000)
  local connect = math.min(msecs, 5000)
  local options
  if dovecot_24 then
    -- 2.4 takes the http_client_* settings, without the prefix, as strings.
    options = {
      request_timeout = msecs .. "ms",
      request_absolute_timeout = msecs .. "ms",
      connect_timeout = connect .. "ms",
      request_max_attempts = "2",
      user_agent = "mailauth.lua",
    }
  else
    options = {
      request_timeout_msecs = msecs,
      request_absolute_timeout_msecs = msecs,
      connect_timeout_msecs = connect,
      max_attempts = 2,
      user_agent = "mailauth.lua",
    }
  end
  local client = dovecot.http.client(options)
  return function(path, body, headers)
    local req = client:request({ url = s.base_url .. path, method = "POST" })
    for k, v in pairs(headers) do req:add_header(k, v) end
    req:set_payload(body)
    local resp = req:submit()
    local status = resp:status()
    -- 9000 and up are the client's own errors (connect failed, timed out, ...).
    if status >= 9000 then return nil, tostring(resp:reason()) end
    return status, resp:payload()
  end
end

local TRANSPORTS = { builtin = builtin_transport, luasocket = luasocket_transport, dovecot = dovecot_transport }

local function load_settings()
  if settings then return settings end
  local origin = init_args.config_file or os.getenv("MAILAUTH_LUA_CONFIG") or CONFIG_FILE
  local text, err = read_file(origin)
  if not text then return nil, "cannot read settings: " .. tostring(err) end
  local raw, perr = parse_settings(text, origin)
  if not raw then return nil, perr end
  local s, verr = validate_settings(raw, origin)
  if not s then return nil, verr end
  local made, transport = pcall(TRANSPORTS[s.http_client], s)
  if not made then return nil, "cannot set up http_client " .. s.http_client .. ": " .. tostring(transport) end
  s.transport = transport
  -- Only a complete, valid configuration is kept; a broken one is re-read on
  -- the next lookup, so fixing the file needs no Dovecot reload.
  settings = s
  return s
end

-- One wording per network failure, whatever the transport's own message: the
-- log line an admin looks up (docs/dovecot.md, Troubleshooting) is the same for
-- builtin, luasocket and dovecot. The transport's text follows in brackets.
local UNREACHABLE = {
  { "refused", "connection refused" },
  { "no such file", "no such socket" },
  { "permission denied", "permission denied" },
  { "timeout", "timeout" },
  { "timed out", "timeout" },
  { "closed", "connection closed" },
  { "connection lost", "connection closed" },
  { "reset", "connection closed" },
  { "broken pipe", "connection closed" },
}

local function unreachable(s, text)
  local detail = tostring(text)
  local lower = detail:lower()
  for _, m in ipairs(UNREACHABLE) do
    if lower:find(m[1], 1, true) then
      return string.format("unreachable: %s [%s: %s]", m[2], s.http_client, detail:sub(1, 200))
    end
  end
  return string.format("unreachable: %s [%s]", detail:sub(1, 200), s.http_client)
end

local function call(path, payload)
  local s, err = load_settings()
  if not s then return nil, err end
  local body = cjson.encode(payload)
  local ok, status, text = pcall(s.transport, path, body, s.headers)
  if not ok then return nil, "request failed: " .. tostring(status) end
  if not status then return nil, unreachable(s, text) end
  if status ~= 200 then return nil, "answered HTTP " .. tostring(status) end
  local parsed, answer = pcall(cjson.decode, text)
  if not parsed or type(answer) ~= "table" or type(answer.result) ~= "string" then
    return nil, "the answer is not the expected JSON"
  end
  return answer
end

local function service_of(req)
  -- 2.4 renamed %{service} to %{protocol}; an unknown key reads as nil.
  return req.protocol or req.service
end

local function reason_of(answer)
  local reason = answer.reason
  if type(reason) ~= "string" or reason == "" then reason = answer.result end
  reason = reason:gsub("[%c]", " ")
  if #reason > MAX_REASON then reason = reason:sub(1, MAX_REASON) end
  return "mailauth: " .. reason
end

local function field_value(v)
  local t = type(v)
  if t == "string" then return v end
  if t == "boolean" then return v end
  if t == "number" then
    -- cjson decodes every number as a float; Dovecot wants "5", not "5.0".
    local i = math.tointeger(v)
    if i then return tostring(i) end
    return tostring(v)
  end
  return nil
end

local function fields_of(answer)
  local fields = {}
  if type(answer.fields) == "table" then
    for k, v in pairs(answer.fields) do
      local value = field_value(v)
      if type(k) == "string" and k:match("^[%w_%.%-]+$") and value ~= nil then fields[k] = value end
    end
  end
  if type(answer.user) == "string" and answer.user ~= "" then fields.user = answer.user end
  return fields
end

local PASSDB_RESULTS = {
  ok = "PASSDB_RESULT_OK",
  password_mismatch = "PASSDB_RESULT_PASSWORD_MISMATCH",
  user_unknown = "PASSDB_RESULT_USER_UNKNOWN",
  user_disabled = "PASSDB_RESULT_USER_DISABLED",
  internal_failure = "PASSDB_RESULT_INTERNAL_FAILURE",
}

function script_init(args)
  -- Dovecot 2.4 passes lua_settings as a table; 2.3 passes nothing.
  if type(args) == "table" then
    init_args = args
    dovecot_24 = true
  end
  return 0
end

function script_deinit()
end

-- Dovecot 2.4 caches a Lua passdb only when this function exists. mailauth's
-- answer depends on the protocol (per-service access), not on the client IP.
function auth_passdb_get_cache_key()
  return init_args.cache_key or "%{user}\t%{protocol}"
end

function auth_userdb_get_cache_key()
  return init_args.userdb_cache_key or "%{user}"
end

-- Issue 16: a password that is not valid UTF-8 (a Latin-1 client) would make the
-- JSON body invalid; its exact bytes go as password_b64 instead, and the daemon
-- verifies those bytes, as Dovecot itself would.
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = (a << 16) | ((b or 0) << 8) | (c or 0)
    out[#out + 1] = B64:sub((n >> 18) + 1, (n >> 18) + 1) .. B64:sub(((n >> 12) & 63) + 1, ((n >> 12) & 63) + 1)
      .. (b and B64:sub(((n >> 6) & 63) + 1, ((n >> 6) & 63) + 1) or "=")
      .. (c and B64:sub((n & 63) + 1, (n & 63) + 1) or "=")
  end
  return table.concat(out)
end

function auth_password_verify(req, password)
  local password_b64 = nil
  if not utf8.len(password) then
    password_b64 = base64(password)
    password = ""
  end
  local answer, err = call("/v1/passdb", {
    user = req.user,
    password = password,
    password_b64 = password_b64,
    service = service_of(req),
    remote_ip = req.remote_ip,
    local_ip = req.local_ip,
    mech = req.mechanism,
    secured = req.secured ~= nil and req.secured ~= "",
    session = req.session,
  })
  if not answer then
    return auth().PASSDB_RESULT_INTERNAL_FAILURE, "mailauth: " .. err
  end
  local name = PASSDB_RESULTS[answer.result]
  if not name then
    return auth().PASSDB_RESULT_INTERNAL_FAILURE, string.format("mailauth: unknown result %q", (answer.result:sub(1, 40):gsub("%c", "?")))
  end
  if name == "PASSDB_RESULT_OK" then
    return auth().PASSDB_RESULT_OK, fields_of(answer)
  end
  if name ~= "PASSDB_RESULT_INTERNAL_FAILURE" then
    -- With auth_verbose Dovecot logs only "Password mismatch" itself; an unknown or
    -- disabled user leaves no auth line (checked on 2.3.19 and 2.4.1), only the
    -- login process's "auth failed". The daemon's reason shows with auth_debug.
    req:log_debug(reason_of(answer))
  end
  return auth()[name], reason_of(answer)
end

-- Credential lookups (CRAM-MD5 and other non-plaintext mechanisms, `doveadm auth
-- lookup`, a static userdb without allow_all_users) need the stored hash, which
-- a verify API never hands out. NEXT declines without being cached, whereas a
-- USER_UNKNOWN here would be negative-cached and refuse the user's plaintext
-- logins that share the cache key. A later passdb may still answer.
function auth_passdb_lookup(req)
  -- Dovecot 2.4's oauth2 mechanism looks the user up here after its token check
  -- (mailauth's introspection endpoint) succeeded: nothing to add, nothing to warn about.
  local mech = (req.mechanism or ""):upper()
  if mech == "XOAUTH2" or mech == "OAUTHBEARER" then
    return auth().PASSDB_RESULT_NEXT, ""
  end
  req:log_warning("mailauth: credential lookups are not supported (plaintext mechanisms only); see docs/dovecot.md")
  return auth().PASSDB_RESULT_NEXT, ""
end

function auth_userdb_lookup(req)
  local answer, err = call("/v1/userdb", { user = req.user, service = service_of(req) })
  if not answer then
    return auth().USERDB_RESULT_INTERNAL_FAILURE, "mailauth: " .. err
  end
  if answer.result == "ok" then
    return auth().USERDB_RESULT_OK, fields_of(answer)
  end
  if answer.result == "user_unknown" then
    return auth().USERDB_RESULT_USER_UNKNOWN, reason_of(answer)
  end
  return auth().USERDB_RESULT_INTERNAL_FAILURE, reason_of(answer)
end
