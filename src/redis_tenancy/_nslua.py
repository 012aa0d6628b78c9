"""Lua scripts in a tenant's logical keyspace: the prelude, the wrapping, the SHA map.

A script that only uses ``KEYS[]`` is easy to namespace; Popoto's scripts (and many
others) read key names out of hashes, sets and ``ARGV`` and pass them to
``redis.call``. To keep those correct, every script a namespaced client sends is
*wrapped*: a one-line prelude, generated from the same command table as the Python
rewriting (:mod:`redis_tenancy._keyspecs`), shadows ``KEYS``, ``ARGV`` and ``redis`` as
locals. The script then sees logical key names in ``KEYS``, its ``ARGV`` unchanged,
and a ``redis.call``/``redis.pcall`` that prefixes the key arguments of every command
(and un-prefixes key names in replies) exactly like the client does. The server still
receives the real, prefixed ``KEYS`` (so ACLs and Cluster routing see real keys); the
prefix itself travels as an extra first ``ARGV`` that the prelude removes, so one
wrapped script serves every tenant (the script cache does not grow with tenants).

The prelude sits on the script's first line (after a ``#!`` shebang line, if any), so
line numbers in error messages are the caller's. Callers keep using the SHA1 of their
own text: :func:`wrap` remembers which wrapped SHA it stands for, process-wide, so
``SCRIPT LOAD``, ``EVALSHA`` and ``SCRIPT EXISTS`` translate it and redis-py's
``Script`` objects (and Popoto's SHA caching) work unchanged.

Limits, by design: a script that reaches the real globals (``_G.redis``, ``rawget``)
bypasses the prelude; an unknown command inside a script is refused (no
``COMMAND INFO`` lookup from Lua); numbers used as key names are formatted by Lua
(``%.14g``).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass

from ._keyfinder import CommandSpec, fast_kind
from ._keyspecs import COMMANDS

__all__ = [
    "PRELUDE",
    "SCAN_COUNT",
    "WrappedScript",
    "lua_spec_table",
    "unwrap_text",
    "wrap",
    "wrapped_sha",
]

#: COUNT of each SCAN that emulates KEYS / DBSIZE / FLUSHDB (here and in Lua).
SCAN_COUNT = 1000

#: How many distinct scripts the process remembers; older ones are forgotten (their
#: callers then get NOSCRIPT once, and redis-py's ``Script`` reloads them).
MAX_SCRIPTS = 10_000


def _encode_entry(spec: CommandSpec) -> str:
    fields: list[str] = []
    if spec.container:
        fields.append("C")
    if spec.refused is not None:
        fields.append("X" + spec.refused)
    if spec.handler is not None:
        fields.append("H" + spec.handler)
    if spec.reply is not None:
        fields.append("Y" + spec.reply)
    for key in spec.keys:
        begin = str(key.index) if key.keyword is None else f"{key.keyword}@{key.startfrom}"
        kind = "r" if key.find == "range" else "n" if key.find == "keynum" else "u"
        fields.append(f"K{begin}/{kind}{key.a}.{key.b}.{key.c}")
    for tr in spec.transforms:
        fields.append(f"T{tr.kind}.{tr.start}.{tr.count}")
    return ",".join(fields)


def lua_spec_table() -> str:
    """The command table as the prelude reads it: ``;name=field,field...`` per command.

    Commands the server never runs inside a script (flag ``noscript``) are left out:
    the prelude refuses a command it does not find, as the server would.
    """
    parts = [
        f";{name}={_encode_entry(spec)}"
        for name, spec in sorted(COMMANDS.items())
        if "noscript" not in spec.flags or spec.container
    ]
    return "".join(parts) + ";"


# The prelude, written readably and joined into one line by _one_line(). Rules for
# editing: no comments at the end of a code line, no "--" inside strings.
_PRELUDE_SOURCE = r"""
local KEYS, ARGV, redis = (function(K, A, R)
  local P = A[1]
  local PL = #P
  local sub, lower, upper, find = string.sub, string.lower, string.upper, string.find
  local gsub, gmatch, match = string.gsub, string.gmatch, string.match
  local tonumber, tostring, type, error = tonumber, tostring, type, error
  local select, unpack, pcall, floor = select, unpack, pcall, math.floor
  local REFUSED = " refused on a namespaced client: "
  local NOT_HERE = "not available in a namespaced script"
  local EP = gsub(P, "[%*%?%[%]\\]", "\\%0")
  local EPL = #EP
  local S = [==[@SPEC@]==]
  local ONE, ALL, PAIRS = "@ONE@", "@ALL@", "@PAIRS@"
  local kinds = {}
  local TERR = R.REDIS_VERSION_NUM ~= nil
  local function raise(msg)
    if TERR then error({err = msg}) end
    error(msg, 0)
  end
  local function unkey(x)
    if type(x) == "string" and sub(x, 1, PL) == P then return sub(x, PL + 1) end
    raise("NAMESPACE a reply carried a key outside the namespace")
  end
  local keys = {}
  for i = 1, #K do keys[i] = unkey(K[i]) end
  local argv = {}
  for i = 2, #A do argv[i - 1] = A[i] end
  local slow
  local function load_slow()
    local cache = {}
    local function entry(name)
      local e = cache[name]
      if e ~= nil then return e end
      local _, f = find(S, ";" .. name .. "=", 1, true)
      if not f then cache[name] = false return false end
      local stop = find(S, ";", f + 1, true)
      e = {keys = {}, tr = {}}
      for field in gmatch(sub(S, f + 1, stop - 1), "[^,]+") do
        local c, v = sub(field, 1, 1), sub(field, 2)
        if c == "C" then e.container = true
        elseif c == "X" then e.refused = v
        elseif c == "H" then e.handler = v
        elseif c == "Y" then e.reply = v
        elseif c == "K" then
          local b, kind, x, y, z = match(v, "^([^/]*)/(%a)(%-?%d+)%.(%-?%d+)%.(%-?%d+)$")
          local kw, from = match(b, "^(.*)@(%-?%d+)$")
          e.keys[#e.keys + 1] = {
            index = tonumber(b), kw = kw and lower(kw), from = tonumber(from),
            find = kind, a = tonumber(x), b = tonumber(y), c = tonumber(z)}
        elseif c == "T" then
          local kind, st, cnt = match(v, "^(%a+)%.(%-?%d+)%.(%-?%d+)$")
          e.tr[#e.tr + 1] = {kind, tonumber(st), tonumber(cnt)}
        end
      end
      cache[name] = e
      return e
    end
    local function numkeys(v)
      if type(v) == "number" then
        if v == floor(v) then return v end
        return nil
      end
      if type(v) == "string" and (match(v, "^%-?[1-9]%d*$") or v == "0") then return tonumber(v) end
      return nil
    end
    local function is(v, word)
      return type(v) == "string" and lower(v) == word
    end
    local function positions(e, a, n)
      local out = {}
      for _, s in ipairs(e.keys) do
        local first
        if s.kw == nil then
          first = s.index
        else
          local st, en, inc
          if s.from > 0 then st, en, inc = s.from, n - 1, 1 else st, en, inc = n + s.from, 0, -1 end
          local i = st
          while i ~= en do
            if i >= n or i < 1 then break end
            if is(a[i + 1], s.kw) then first = i + 1 break end
            i = i + inc
          end
        end
        if first then
          local last, step = -1, 1
          if s.find == "r" then
            if s.a >= 0 then last = first + s.a
            elseif s.c == 0 then last = n + s.a
            else last = first + (floor((n - first) / s.c) + s.a) end
            step = s.b
          elseif s.find == "n" then
            local idx = first + s.a
            if idx < n then
              local nk = numkeys(a[idx + 1])
              if nk == nil or nk < 0 then return nil, "numkeys is not a non-negative integer" end
              first = first + s.b
              step = s.c
              last = first + (nk - 1) * step
            end
          else
            return nil, "its keys cannot be found exactly"
          end
          if last > n - 1 then last = n - 1 end
          local i = first
          while i <= last do out[#out + 1] = i i = i + step end
        end
      end
      return out
    end
    local function scanloop(pattern, each)
      local cursor = "0"
      repeat
        local r = R.call("SCAN", cursor, "MATCH", pattern, "COUNT", @COUNT@)
        cursor = r[1]
        for i = 1, #r[2] do each(r[2][i]) end
      until cursor == "0"
    end
    local handlers = {}
    handlers.scan = function(a, n)
      local found = false
      local i = 3
      while i + 1 <= n do
        if is(a[i], "match") then a[i + 1] = EP .. a[i + 1] found = true end
        i = i + 2
      end
      if not found then a[n + 1] = "MATCH" a[n + 2] = EP .. "*" n = n + 2 end
      return 1, a, n
    end
    handlers.keys = function(a, n)
      if n ~= 2 then return 3, "wrong number of arguments" end
      local out, seen = {}, {}
      scanloop(EP .. a[2], function(k)
        local u = unkey(k)
        if not seen[u] then seen[u] = true out[#out + 1] = u end
      end)
      return 2, out
    end
    handlers.dbsize = function(a, n)
      local count, seen = 0, {}
      scanloop(EP .. "*", function(k)
        if not seen[k] then seen[k] = true count = count + 1 end
      end)
      return 2, count
    end
    handlers.flushdb = function(a, n)
      local doomed = {}
      scanloop(EP .. "*", function(k) unkey(k) doomed[#doomed + 1] = k end)
      for i = 1, #doomed, 500 do R.call("UNLINK", unpack(doomed, i, math.min(i + 499, #doomed))) end
      return 2, R.status_reply("OK")
    end
    handlers.copy = function(a, n)
      for i = 4, n do
        if is(a[i], "db") then
          return 3, "COPY with DB would copy outside the namespace's database"
        end
      end
      a[2] = P .. a[2]
      a[3] = P .. a[3]
      return 1, a, n
    end
    handlers.sort = function(a, n)
      if n >= 2 then a[2] = P .. a[2] end
      local j = 3
      while j <= n do
        local w = type(a[j]) == "string" and lower(a[j]) or ""
        if w == "asc" or w == "desc" or w == "alpha" then j = j + 1
        elseif w == "limit" and j + 2 <= n then j = j + 3
        elseif (w == "store" or w == "by") and j + 1 <= n then a[j + 1] = P .. a[j + 1] j = j + 2
        elseif w == "get" and j + 1 <= n then
          if a[j + 1] ~= "#" then a[j + 1] = P .. a[j + 1] end
          j = j + 2
        else break end
      end
      return 1, a, n
    end
    handlers.pubsub_channels = function(a, n)
      if n >= 3 then a[3] = EP .. a[3] else a[3] = EP .. "*" n = 3 end
      return 1, a, n
    end
    local function slow_prep(a, n, name)
      local e = entry(name)
      if e and e.container then
        if n < 2 or type(a[2]) ~= "string" then return 1, a, n end
        name = name .. "|" .. lower(a[2])
        e = entry(name)
      end
      local label = upper(gsub(name, "|", " "))
      if not e then return 3, label .. REFUSED .. NOT_HERE end
      if e.refused then return 3, label .. REFUSED .. e.refused end
      local rule = e.reply
      if e.handler then
        local h = handlers[e.handler]
        if not h then return 3, label .. REFUSED .. NOT_HERE end
        local mode, x, y = h(a, n)
        if mode == 3 then return 3, label .. REFUSED .. x end
        if mode == 2 then return 2, x end
        return 1, x, y, rule
      end
      local pos, why = positions(e, a, n)
      if not pos then return 3, label .. REFUSED .. why end
      for i = 1, #pos do a[pos[i] + 1] = P .. a[pos[i] + 1] end
      for _, t in ipairs(e.tr) do
        local last = t[3] < 0 and n - 1 or t[2] + t[3] - 1
        for i = t[2], last do
          if i <= n - 1 then
            if t[1] == "pattern" then a[i + 1] = EP .. a[i + 1] else a[i + 1] = P .. a[i + 1] end
          end
        end
      end
      return 1, a, n, rule
    end
    local function fix(rule, r)
      if rule == nil or type(r) ~= "table" or r.err then return r end
      if rule == "scan" then
        local t = r[2]
        for i = 1, #t do t[i] = unkey(t[i]) end
      elseif rule == "first" then
        if r[1] ~= nil then r[1] = unkey(r[1]) end
      elseif rule == "keylist" then
        for i = 1, #r do r[i] = unkey(r[i]) end
      elseif rule == "pairs" or rule == "streams" then
        if r.map then
          local m = {}
          for k, v in pairs(r.map) do m[unkey(k)] = v end
          r.map = m
        elseif rule == "pairs" then
          for i = 1, #r, 2 do r[i] = unkey(r[i]) end
        else
          for i = 1, #r do r[i][1] = unkey(r[i][1]) end
        end
      end
      return r
    end
    return {prep = slow_prep, fix = fix}
  end
  local function prep(...)
    local n = select("#", ...)
    local a = {...}
    if n == 0 or type(a[1]) ~= "string" then return 1, a, n end
    local name = lower(a[1])
    local kind = kinds[name]
    if kind == nil then
      local probe = ";" .. name .. ";"
      if find(ONE, probe, 1, true) then kind = 1
      elseif find(ALL, probe, 1, true) then kind = 2
      elseif find(PAIRS, probe, 1, true) then kind = 3
      else kind = 0 end
      kinds[name] = kind
    end
    if kind == 1 then
      if n >= 2 then a[2] = P .. a[2] end
      return 1, a, n
    elseif kind ~= 0 then
      for i = 2, n, kind - 1 do a[i] = P .. a[i] end
      return 1, a, n
    end
    if not slow then slow = load_slow() end
    return slow.prep(a, n, name)
  end
  local proxy = setmetatable({}, {__index = R})
  proxy.call = function(...)
    local mode, x, y, rule = prep(...)
    if mode == 1 then
      local r = R.call(unpack(x, 1, y))
      if rule then return slow.fix(rule, r) end
      return r
    end
    if mode == 2 then return x end
    raise(x)
  end
  proxy.pcall = function(...)
    local ok, mode, x, y, rule = pcall(prep, ...)
    if not ok then return R.error_reply(type(mode) == "table" and mode.err or tostring(mode)) end
    if mode == 1 then
      local r = R.pcall(unpack(x, 1, y))
      if not rule then return r end
      local fixed_ok, fixed = pcall(slow.fix, rule, r)
      if fixed_ok then return fixed end
      return R.error_reply(type(fixed) == "table" and fixed.err or tostring(fixed))
    end
    if mode == 2 then return x end
    return R.error_reply(x)
  end
  return keys, argv, proxy
end)(KEYS, ARGV, redis);
"""


def _one_line(source: str) -> str:
    lines = (line.strip() for line in source.strip().splitlines())
    return " ".join(line for line in lines if line and not line.startswith("--")) + " "


def _kind_set(kind: int) -> str:
    """``;name;name;`` of the commands with a fast-path shape (see ``fast_kind``), which the
    prelude rewrites without parsing the table: most calls a script makes."""
    names = sorted(n for n, spec in COMMANDS.items() if fast_kind(spec) == kind)
    return ";" + ";".join(names) + ";"


#: The prelude, one line, ending in a space: the caller's first line continues after it.
PRELUDE: str = _one_line(
    _PRELUDE_SOURCE.replace("@SPEC@", lua_spec_table())
    .replace("@COUNT@", str(SCAN_COUNT))
    .replace("@ONE@", _kind_set(1))
    .replace("@ALL@", _kind_set(2))
    .replace("@PAIRS@", _kind_set(3))
)
_PRELUDE_BYTES = PRELUDE.encode()


@dataclass(frozen=True, slots=True)
class WrappedScript:
    """A caller's script and its wrapped form.

    ``caller_sha`` is the SHA1 of the caller's own text (what redis-py's ``Script``
    computes); ``sha`` is the SHA1 of ``text``, the wrapped script the server caches.
    """

    caller_sha: str
    sha: str
    text: bytes


_lock = threading.Lock()
_by_text: dict[bytes, WrappedScript] = {}
_by_caller_sha: dict[str, str] = {}


def _wrap_bytes(source: bytes) -> bytes:
    if source.startswith(b"#!"):
        head, newline, rest = source.partition(b"\n")
        return head + newline + _PRELUDE_BYTES + rest
    return _PRELUDE_BYTES + source


def wrap(script: str | bytes) -> WrappedScript:
    """The wrapped form of ``script`` (``str`` is encoded as UTF-8, as redis-py does).

    Remembered process-wide (up to :data:`MAX_SCRIPTS`), so :func:`wrapped_sha` can
    translate the caller's SHA afterwards.
    """
    source = script.encode() if isinstance(script, str) else bytes(script)
    found = _by_text.get(source)
    if found is not None:
        return found
    text = _wrap_bytes(source)
    wrapped = WrappedScript(
        caller_sha=hashlib.sha1(source).hexdigest(),
        sha=hashlib.sha1(text).hexdigest(),
        text=text,
    )
    with _lock:
        if len(_by_text) >= MAX_SCRIPTS:
            oldest = next(iter(_by_text))
            _by_caller_sha.pop(_by_text.pop(oldest).caller_sha, None)
        _by_text[source] = wrapped
        _by_caller_sha[wrapped.caller_sha] = wrapped.sha
    return wrapped


def wrapped_sha(caller_sha: str | bytes) -> str | None:
    """The wrapped script's SHA for the SHA of a caller's text, if it was wrapped here."""
    key = caller_sha.decode() if isinstance(caller_sha, bytes) else str(caller_sha)
    return _by_caller_sha.get(key.lower())


def unwrap_text(text: str | bytes) -> str | bytes:
    """A wrapped script's text without the prelude (``SCRIPT SHOW`` of a wrapped SHA)."""
    prelude: str | bytes = _PRELUDE_BYTES if isinstance(text, bytes) else PRELUDE
    return text.replace(prelude, text[:0], 1)  # type: ignore[arg-type]
