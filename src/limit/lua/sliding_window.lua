-- sliding_window: at most N admitted requests in (now - P, now], exactly; the same decision
-- as src/limit/sliding_window.c, on Redis's clock.
-- key (KEYS[1]): sorted set of the admitted requests, scored by their time (us); denied requests
-- are not recorded. A change of N or P reads the same set under the new rate.
-- ARGV: [1] N, [2] P (us), [3] need, [4] take, [5] burst and [6] delay (all four unused:
-- sliding_window takes no cost), [7] member unique to this request.
-- Returns {allowed, remaining, reset_us, retry_after_us, delay_us}, the last two left out
-- when 0.
-- Scores are doubles: exact while now + P < 2^53 us.
-- key, member, n, p, now and fmt come from the prelude (src/limit/lua/prelude/prelude.lua).
-- An entry has left the window once now - ts >= P; one from the future (clock stepped back)
-- stays.
redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt('%d', now - p))
local count = redis.call('ZCARD', key)
if count >= n then
    -- Written under a larger N, the set may hold more than N, every one counted: a place
    -- frees when the (count - N + 1)-th oldest leaves, as in the memory store's log.
    local oldest = tonumber(redis.call('ZRANGE', key, count - n, count - n, 'WITHSCORES')[2])
    local newest = tonumber(redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2])
    return {0, 0, math.max(newest + p - now, 0), math.max(oldest + p - now, 0)}
end
redis.call('ZADD', key, fmt('%d', now), member or ARGV[7])
redis.call('PEXPIRE', key, fmt('%d', math.ceil(p / 1000)))
return {1, n - count - 1, p}
