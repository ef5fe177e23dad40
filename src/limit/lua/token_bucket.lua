-- token_bucket: a bucket of `burst` tokens refilled continuously at N per P; a request takes
-- one token. Exact integers: the level is kept in units of 1/P token, so one token is P units
-- and the refill is N units per microsecond.
-- KEYS[1] hash {u = level in units, t = time of u (us)}; a missing key is a full bucket.
-- ARGV: N, P (us), burst, delay, member. Returns {allowed, remaining, reset_us,
-- retry_after_us, delay_us}. Lua numbers are doubles: the script refuses burst*P >= 2^53.
local n = tonumber(ARGV[1])
local p = tonumber(ARGV[2])
local b = tonumber(ARGV[3])
if not n or not p or not b or n < 1 or p < 1 or b < 0 then
    return redis.error_reply('ERR sluice: bad N, P or burst')
end
local full = b * p
if full >= 9007199254740992 then
    return redis.error_reply('ERR sluice: burst*P too large for token_bucket')
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local st = redis.call('HMGET', KEYS[1], 'u', 't')
local u, last = tonumber(st[1]), tonumber(st[2])
if not u or not last then
    u = full
elseif now > last then
    -- Compare elapsed time with the time to fill before multiplying, so no product overflows.
    local missing = full - u
    if now - last >= math.ceil(missing / n) then
        u = full
    else
        u = u + (now - last) * n
    end
end
local allowed = 0
if u >= p then
    allowed = 1
    u = u - p
end
local reset = math.ceil((full - u) / n)
local retry = 0
if allowed == 0 then
    retry = math.ceil((p - u) / n)
end
if reset > 0 then
    redis.call('HSET', KEYS[1], 'u', u, 't', now)
    redis.call('PEXPIRE', KEYS[1], math.ceil(reset / 1000))
else
    redis.call('DEL', KEYS[1])
end
return {allowed, math.floor(u / p), reset, retry, 0}
