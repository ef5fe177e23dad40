-- rls_fixed_window: envoyproxy/ratelimit's fixed window, the same decision as
-- src/limit/rls_fixed_window.c on Redis's clock: every hit counted, over the limit when the
-- count after the hits exceeds N, a new window from zero.
-- key (KEYS[1]): {s, c} (load and save, in the prelude): s, the window's start (us), and c,
-- the hits counted in it.
-- ARGV: [1] N, [2] P (us), [3] need (not read but for the prelude's checks), [4] take (the
-- hits); sluice sends a script only the arguments up to the last it reads.
-- Returns {allowed, remaining, reset_us, retry_after_us}, the last left out when 0.
-- Exact while (k+1)*P < 2^53 us; the count stays at most COUNTER_MAX (2^50).
-- n, p, take, div, now, load and save come from the prelude
-- (src/limit/lua/prelude/prelude.lua).
local k = div(now, p)
local ss, count = load('s', 'c')
if not ss or div(ss, p) < k then
    ss, count = k * p, 0
end
local until_end = (div(ss, p) + 1) * p - now
count = math.min(count + take, COUNTER_MAX)
save(until_end, ss, count)
if count > n then
    return {0, 0, until_end, until_end}
end
return {1, n - count, until_end}
