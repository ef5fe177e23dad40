-- sliding_window: at most N admitted requests in (now - P, now], exactly; the same decision
-- as src/limit/sliding_window.c, on Redis's clock.
-- key (KEYS[1]): sorted set of the admitted requests, scored by their time (us); denied requests
-- are not recorded. A change of N or P reads the same set under the new rate. Each member
-- begins with the key's time to live, in ms, past its score, and a '/': ceil(P / 1000), the
-- expiry an admission sets.
-- ARGV: [1] N, [2] P (us), [3] need, [4] take, [5] burst and [6] delay (all four unused:
-- sliding_window takes no cost), [7] member unique to this request, beginning with
-- ceil(P / 1000) and '/' (src/store/redis.c).
-- Returns {allowed, remaining, reset_us, retry_after_us, delay_us}, the last two left out
-- when 0.
-- Scores are doubles: exact while now + P < 2^53 us.
-- key, member, n, p, cdiv, now and fmt come from the prelude (src/limit/lua/prelude/prelude.lua).
-- An entry has left the window once now - ts >= P; one from the future (clock stepped back)
-- stays.
redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt('%d', now - p))
local count = redis.call('ZCARD', key)
local ttl = fmt('%d', cdiv(p, 1000))
if count >= n then
    -- Written under a larger N, the set may hold more than N, every one counted: a place
    -- frees when the (count - N + 1)-th oldest leaves, as in the memory store's log.
    local oldest = tonumber(redis.call('ZRANGE', key, count - n, count - n, 'WITHSCORES')[2])
    local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    local reset = math.max(tonumber(last[2]) + p - now, 0)
    -- A denial writes nothing while the key lives until the newest entry leaves the window,
    -- as the memory store keeps its log: its member says how long past it the key was set
    -- to live. Admitted under another P (a consumer moved to another plan, a reload), the
    -- key would expire with the log still counting (a longer P) or outlive it (a shorter
    -- one): its expiry is set as this P has it, and the newest entries say so, so that the
    -- next denials under this P write nothing.
    local m = last[1]
    local at = string.find(m, '/', 1, true)
    if not at or string.sub(m, 1, at - 1) ~= ttl then
        -- Each renamed before it goes, so that the set, and its expiry, never vanish.
        for _, e in ipairs(redis.call('ZRANGEBYSCORE', key, last[2], last[2])) do
            local from = string.find(e, '/', 1, true)
            local renamed = ttl .. '/' .. (from and string.sub(e, from + 1) or e)
            if renamed ~= e then
                redis.call('ZADD', key, last[2], renamed)
                redis.call('ZREM', key, e)
            end
        end
        redis.call('PEXPIRE', key, fmt('%d', math.max(cdiv(reset, 1000), 1)))
    end
    return {0, 0, reset, math.max(oldest + p - now, 0)}
end
redis.call('ZADD', key, fmt('%d', now), member or ARGV[7])
redis.call('PEXPIRE', key, ttl)
return {1, n - count - 1, p}
