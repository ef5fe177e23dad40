-- sliding_window_counter: admits when prev*(P - elapsed) + curr*P < N*P, with prev and curr
-- the requests admitted in the previous and current aligned windows; the same decision as
-- src/limit/sliding_window_counter.c (remaining, reset and retry_after as defined there), on
-- Redis's clock.
-- KEYS[1]: hash {s = current window's start (us), c = curr, p = prev}. The start rather than
-- the index, so that a change of P reads it as src/limit/sliding_window_counter.c does.
-- ARGV: [1] N, [2] P (us); sluice sends a script only the arguments up to the last it reads.
-- Returns {allowed, remaining, reset_us, retry_after_us, delay_us}.
-- Lua numbers are doubles: the script refuses N*P >= 2^53 (with P = 1 day, N <= 104249), so
-- that every product is exact; math.fmod, unlike %, divides exactly.
-- n, p, div, cdiv and now come from the prelude (src/limit/lua/prelude/prelude.lua).
local limit = n * p
if limit >= 9007199254740992 then
    return redis.error_reply('ERR sluice: N*P too large for sliding_window_counter')
end
local elapsed = math.fmod(now, p)
local k = (now - elapsed) / p
local st = redis.call('HMGET', KEYS[1], 's', 'c', 'p')
local ss, curr, prev = tonumber(st[1]), tonumber(st[2]) or 0, tonumber(st[3]) or 0
-- The stored window's index under the current P (whatever P it began under). A stored window
-- above the current one means the clock stepped back: keep its counters.
local sk = ss and div(ss, p)
if not ss then
    ss, curr, prev = k * p, 0, 0
elseif k == sk + 1 then
    ss, curr, prev = k * p, 0, curr
elseif k > sk then
    ss, curr, prev = k * p, 0, 0
end
local weighted_prev = prev * (p - elapsed)
local allowed, remaining, retry = 0, 0, 0
if weighted_prev + curr * p < limit then
    allowed = 1
    curr = curr + 1
    remaining = math.max(cdiv(limit - weighted_prev, p) - curr, 0)
elseif curr < n then
    -- Later in this window, as prev's weight decays: prev*(P - e) <= (N - curr)*P - 1.
    retry = p - div((n - curr) * p - 1, prev) - elapsed
else
    -- In the next window, where curr becomes prev: curr*(P - e) <= N*P - 1.
    retry = (p - elapsed) + p - div(limit - 1, curr)
end
local reset = 0
if curr > 0 then
    reset = p + (p - elapsed)
elseif prev > 0 then
    reset = p - elapsed
end
if allowed == 1 then
    redis.call('HSET', KEYS[1], 's', ss, 'c', curr, 'p', prev)
    redis.call('PEXPIRE', KEYS[1], math.ceil(reset / 1000))
end
return {allowed, remaining, reset, retry, 0}
