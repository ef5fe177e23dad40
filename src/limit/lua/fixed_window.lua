-- fixed_window: at most N admitted requests in each aligned window [k*P, (k+1)*P); the same
-- decision as src/limit/fixed_window.c, on Redis's clock.
-- KEYS[1]: hash {s = the window's start (us), c = requests admitted in it}. The start rather
-- than the index, so that a change of P reads it as src/limit/fixed_window.c does.
-- ARGV: [1] N, [2] P (us); sluice sends a script only the arguments up to the last it reads.
-- Returns {allowed, remaining, reset_us, retry_after_us, delay_us}.
-- Exact while (k+1)*P < 2^53 us (any P up to 2^51 us at today's clock): Lua numbers are
-- doubles, and div (the prelude's, with math.fmod) divides exactly.
-- n, p, div, cdiv and now come from the prelude (src/limit/lua/prelude/prelude.lua).
local k = div(now, p)
local st = redis.call('HMGET', KEYS[1], 's', 'c')
local ss, count = tonumber(st[1]), tonumber(st[2]) or 0
-- The stored window's index under the current P: the count carries over while it began in
-- the current aligned window (whatever P it began under). One after the current window
-- means the clock stepped back: keep counting in it.
local sk = ss and div(ss, p) or k
if not ss or sk < k then
    ss, sk, count = k * p, k, 0
end
local until_end = (sk + 1) * p - now
if count >= n then
    return {0, 0, until_end, until_end, 0}
end
count = count + 1
redis.call('HSET', KEYS[1], 's', ss, 'c', count)
redis.call('PEXPIRE', KEYS[1], math.ceil(until_end / 1000))
return {1, n - count, until_end, 0, 0}
