-- sliding_window: admits while fewer than N were admitted in (now-P, now]; exact.
-- KEYS[1] sorted set of admitted requests, scored by their time (us); denied requests are not
-- recorded. ARGV: N, P (us), burst, delay, member (unique to the request).
-- Returns {allowed, remaining, reset_us, retry_after_us, delay_us}.
-- Scores are doubles, exact for times below 2^53 us (year 2255).
local n = tonumber(ARGV[1])
local p = tonumber(ARGV[2])
if not n or not p or n < 1 or p < 1 then
    return redis.error_reply('ERR sluice: bad N or P')
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - p)
local count = redis.call('ZCARD', KEYS[1])
if count >= n then
    -- The request is admitted again once the oldest entry leaves the window.
    local oldest = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2])
    local newest = tonumber(redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2])
    return {0, 0, newest + p - now, oldest + p - now, 0}
end
redis.call('ZADD', KEYS[1], now, ARGV[5])
redis.call('PEXPIRE', KEYS[1], math.ceil(p / 1000))
return {1, n - count - 1, p, 0, 0}
