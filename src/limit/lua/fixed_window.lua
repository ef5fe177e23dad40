-- fixed_window: at most N admitted requests in each aligned window [k*P, (k+1)*P); the same
-- decision as src/limit/fixed_window.c, on Redis's clock.
-- KEYS[1]: hash {k = window index, c = requests admitted in it}.
-- ARGV: [1] N, [2] P (us); sluice sends a script only the arguments up to the last it reads.
-- Returns {allowed, remaining, reset_us, retry_after_us, delay_us}.
-- Exact while (k+1)*P < 2^53 us (any P up to 2^51 us at today's clock): Lua numbers are
-- doubles, and math.fmod, unlike %, divides exactly.
-- n, p, div, cdiv and now come from the prelude (src/limit/lua/prelude/prelude.lua).
local k = (now - math.fmod(now, p)) / p
local st = redis.call('HMGET', KEYS[1], 'k', 'c')
local sk, count = tonumber(st[1]), tonumber(st[2]) or 0
-- A stored window above the current one means the clock stepped back: keep counting in it.
if not sk or sk < k then
    sk, count = k, 0
end
local until_end = (sk + 1) * p - now
if count >= n then
    return {0, 0, until_end, until_end, 0}
end
count = count + 1
redis.call('HSET', KEYS[1], 'k', sk, 'c', count)
redis.call('PEXPIRE', KEYS[1], math.ceil(until_end / 1000))
return {1, n - count, until_end, 0, 0}
