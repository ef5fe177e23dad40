-- The prelude of every sluice script, joined before each src/limit/lua/<algorithm>.lua at
-- build time (cmake/LuaScripts.cmake), so that the five scripts cannot drift apart on the
-- parts they share. It defines n (ARGV[1], N), p (ARGV[2], P in us), div, cdiv, rescale and
-- now.
-- It reads no ARGV past [2]: sluice sends a script only the arguments up to the last it reads.
local n = tonumber(ARGV[1])
local p = tonumber(ARGV[2])
if not n or not p or n < 1 or p < 1 then
    return redis.error_reply('ERR sluice: bad N or P')
end
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
-- Redis before 5 replicates scripts verbatim and refuses writes after TIME unless told to
-- replicate effects.
if redis.replicate_commands then
    redis.replicate_commands()
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
