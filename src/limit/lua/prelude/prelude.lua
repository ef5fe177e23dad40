-- The prelude of every sluice script, joined before each src/limit/lua/<algorithm>.lua at
-- build time (cmake/LuaScripts.cmake), so that the five scripts cannot drift apart on the
-- parts they share. It defines n (ARGV[1], N), p (ARGV[2], P in us), need and take (ARGV[3]
-- and [4], the units a decision asks, include/sluice/limit.h struct sl_units), the bounds
-- TIME_MAX and COUNTER_MAX (SL_TIME_MAX, SL_COUNTER_MAX), div, cdiv, rescale, now, fmt, which
-- spells the numbers a script sends, and load and save, which read and write the key's state.
-- It reads no ARGV past [4] but the test hook [8]: sluice sends a script only the arguments up
-- to the last it reads (at most [7]), leaves out those at the end that hold their default
-- (need 1, take = need, burst = N: src/store/redis_eval.c), and sends [8] only when a test
-- pinned the clock. Each argument costs Redis an object and a Lua string per call.
-- key is the key decided on: KEYS[1] here, and each of KEYS in turn in a batch script, which
-- runs the algorithm once per key (src/store/redis_eval.c).
local key = KEYS[1]
-- sliding_window's member for this decision when a batch script sets it (nil: its argument).
local member
local n = tonumber(ARGV[1])
local p = tonumber(ARGV[2])
if not n or not p or n < 1 or p < 1 then
    return redis.error_reply('ERR sluice: bad N or P')
end
-- tonumber parses with strtod, which costs Redis more than all the prelude's arithmetic: need
-- and take are nearly always 1 (a charge's need is 0), and the same string is the same number.
local need = (not ARGV[3] or ARGV[3] == '1') and 1 or tonumber(ARGV[3])
local take = (not ARGV[4] or ARGV[4] == ARGV[3]) and need or tonumber(ARGV[4])
-- 2^32 (SL_UNITS_MAX): every product of units and P below stays exact or saturates.
if not need or not take or need < 0 or take < 0 or need > 4294967296 or take > 4294967296 then
    return redis.error_reply('ERR sluice: bad need or take')
end
local TIME_MAX = 4503599627370496 -- 2^52 us: reported times saturate here
local COUNTER_MAX = 1125899906842624 -- 2^50: counted units, debt included, saturate here
-- Lua numbers are doubles; math.fmod, unlike %, divides exactly, so these are exact for
-- integers below 2^53.
local function div(a, b) -- floor(a / b), a >= 0
    return (a - math.fmod(a, b)) / b
end
local function cdiv(a, b) -- ceil(a / b), a >= 0
    local r = math.fmod(a, b)
    return (a - r) / b + (r > 0 and 1 or 0)
end
-- ceil(f * n / from): the fraction f/from of a microsecond (0 <= f < from) in units of 1/n
-- instead, rounded up, so that a time converted to a new N is never earlier. f * n may pass
-- 2^53, so n is split in 15-bit halves: with f, from and n below 2^30 (N is at most 10^9)
-- every intermediate stays below 2^46. The result is at most n.
local function rescale(f, from)
    local hi, lo = div(n, 32768), math.fmod(n, 32768)
    local a = f * hi
    local x = math.fmod(a, from) * 32768 + f * lo
    local r = math.fmod(x, from)
    return div(a, from) * 32768 + (x - r) / from + (r > 0 and 1 or 0)
end
-- The numbers a script writes are spelled here, fmt('%d', x): given a number, redis.call
-- formats it with "%.17g", which costs Redis more, and both spell the same digits for the
-- integers in [0, 2^53) written.
local fmt = string.format
-- A key's state (every algorithm's but sliding_window's) is one string: the algorithm's two
-- to four integers as little-endian IEEE doubles (exact below 2^53, as every one is), in the
-- order of the fields it names, written with its time to live by one SET ... PX. GET and SET
-- are two commands where a hash took three (HMGET, HSET, PEXPIRE), a command costs Redis
-- more than all of a script's arithmetic, and struct packs and unpacks numbers for a fraction
-- of what spelling them in decimal and parsing them back costs. load(...) returns the
-- numbers (nil for a missing key); a key that still holds a hash, as an earlier sluice wrote
-- it, is read from it under the field names given, and becomes a string when next written.
-- A string that is not such a state, or any other type, is a WRONGTYPE error.
-- A field named x comes last: the instant (us, this clock) the key was written to live
-- until, which the window algorithms keep so that a denial can tell, without asking Redis,
-- whether the key lives as long as the current rate reads its state (their own files say
-- when it would not); a state an earlier sluice wrote has no x, one number fewer, and load
-- returns x nil.
-- A batch script sets held to a table: it keeps each key's state there, by key, from its
-- first save on, and writes each (listed in held[1], held[2], ...) once at its end, so that
-- a key decided many times in one call costs one GET and one SET.
local held
local function load(...)
    local h = held and held[key]
    if h then
        return h[1], h[2], h[3], h[4]
    end
    local v = redis.pcall('GET', key)
    if type(v) == 'string' then
        local k, j = select('#', ...), #v / 8
        local a, b, c, d
        if j == k or (j == k - 1 and select(k, ...) == 'x') then
            if j == 2 then
                a, b = struct.unpack('<dd', v)
            elseif j == 3 then
                a, b, c = struct.unpack('<ddd', v)
            elseif j == 4 then
                a, b, c, d = struct.unpack('<dddd', v)
            end
        end
        -- Each an integer in [0, 2^53) (x % 1 is NaN for NaN and the infinities).
        local c0, d0 = c or 0, d or 0
        if not (a and a % 1 == 0 and b % 1 == 0 and c0 % 1 == 0 and d0 % 1 == 0 and a >= 0 and
                b >= 0 and c0 >= 0 and d0 >= 0 and a < 9007199254740992 and
                b < 9007199254740992 and c0 < 9007199254740992 and d0 < 9007199254740992) then
            error({err = 'WRONGTYPE sluice: the key holds a string sluice did not write'})
        end
        return a, b, c, d
    end
    if not v then
        return nil
    end
    local st = redis.call('HMGET', key, ...)
    return tonumber(st[1]), tonumber(st[2]), tonumber(st[3]), tonumber(st[4])
end
-- write sets key k to the state a, b[, c[, d]] (load's numbers) to live `ttl` us, rounded up
-- to whole ms and at least one: a state that expires is a full quota again, and every
-- algorithm reads a state older than its reset so. save(ttl, a, b[, c[, d]]) is the current
-- key's: written, or in a batch held until its end.
local function write(k, ttl, a, b, c, d)
    local v
    if d then
        v = struct.pack('<dddd', a, b, c, d)
    elseif c then
        v = struct.pack('<ddd', a, b, c)
    else
        v = struct.pack('<dd', a, b)
    end
    redis.call('SET', k, v, 'PX', fmt('%d', math.max(math.ceil(ttl / 1000), 1)))
end
local function save(ttl, a, b, c, d)
    if not held then
        return write(key, ttl, a, b, c, d)
    end
    local h = held[key]
    if h then
        h[1], h[2], h[3], h[4], h[5] = a, b, c, d, ttl
    else
        held[key] = {a, b, c, d, ttl}
        held[#held + 1] = key
    end
end
-- Redis before 5 replicates scripts verbatim and refuses writes after TIME unless told to
-- replicate effects.
if redis.replicate_commands then
    redis.replicate_commands()
end
-- ARGV[8], the time in us instead of Redis's clock, is a test hook: only a store whose clock
-- a unit test pinned (sl_store_redis_pin_clock, never reachable from the configuration)
-- sends it, so that the same sequence decides the same on both stores.
local now
if ARGV[8] then
    now = tonumber(ARGV[8])
else
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
