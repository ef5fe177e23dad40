-- leaky_bucket (GCRA): requests leave one every T = P/N; an early request waits in a queue of
-- `burst` places and is refused when the queue is full. Exact integers: times are kept in
-- units of 1/N microsecond, so T is exactly P units.
-- KEYS[1] string: tat, the theoretical arrival time of the next request, in units (a missing
-- key is an empty queue). ARGV: N, P (us), burst, delay (0|1), member.
-- Returns {allowed, remaining, reset_us, retry_after_us, delay_us}.
-- Lua numbers are doubles: the script refuses N*(now + (burst+1)*P) >= 2^53, i.e. N above ~3
-- at today's time; see the note below on the relative form used instead.
local n = tonumber(ARGV[1])
local p = tonumber(ARGV[2])
local b = tonumber(ARGV[3])
if not n or not p or not b or n < 1 or p < 1 or b < 0 then
    return redis.error_reply('ERR sluice: bad N, P or burst')
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
-- The stored value is the wait (in units) behind the queue as seen at time `t`; keeping it
-- relative keeps the numbers small: a wait is at most (burst+1)*P units.
local st = redis.call('HMGET', KEYS[1], 'q', 't')
local q, last = tonumber(st[1]), tonumber(st[2])
local wait = 0
if q and last and now < last + math.ceil(q / n) then
    wait = q - (now - last) * n
end
if (b + 1) * p >= 9007199254740992 then
    return redis.error_reply('ERR sluice: burst*P too large for leaky_bucket')
end
if wait > b * p then
    local retry = math.ceil((wait - b * p) / n)
    return {0, 0, math.ceil(wait / n), retry, 0}
end
local d = math.ceil(wait / n)
wait = wait + p
local remaining = 0
if wait <= b * p then
    remaining = math.floor((b * p - wait) / p) + 1
end
local reset = math.ceil(wait / n)
redis.call('HSET', KEYS[1], 'q', wait, 't', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(reset / 1000))
if ARGV[4] ~= '1' then
    d = 0
end
return {1, remaining, reset, 0, d}
