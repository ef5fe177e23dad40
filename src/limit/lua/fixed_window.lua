-- fixed_window: at most N admitted units in each aligned window [k*P, (k+1)*P); the same
-- decision as src/limit/fixed_window.c (need, take and debt as defined there), on Redis's
-- clock.
-- key (KEYS[1]): {s, c, x} (load and save, in the prelude; {s, c}, or a hash, before): s, the
-- window's start (us), c, the units taken in it, and x, the instant the key was written to
-- live until (now + reset). The start rather than the index, so that a change of P reads it
-- as src/limit/fixed_window.c does.
-- ARGV: [1] N, [2] P (us), [3] need, [4] take; sluice sends a script only the arguments up to
-- the last it reads.
-- Returns {allowed, remaining, reset_us, retry_after_us, delay_us}, the last two left out
-- when 0.
-- Exact while (k+1)*P < 2^53 us (any P up to 2^51 us at today's clock): Lua numbers are
-- doubles, and div (the prelude's, with math.fmod) divides exactly. The count stays at most
-- COUNTER_MAX (2^50); a time past TIME_MAX (2^52) saturates, as in C: a product of windows
-- and P that passes 2^53 is inexact but still above TIME_MAX.
-- n, p, need, take, div, cdiv, now, load and save come from the prelude
-- (src/limit/lua/prelude/prelude.lua).
local k = div(now, p)
local ss, count, x = load('s', 'c', 'x')
local stored = ss ~= nil
count = count or 0
-- The stored window's index under the current P: the count carries over while it began in
-- the current aligned window (whatever P it began under). One after the current window
-- means the clock stepped back: keep counting in it. Each window begun since repays N units.
local sk = ss and div(ss, p) or k
if not ss then
    ss, sk, count = k * p, k, 0
elseif sk < k then
    local repaid = (k - sk) * n
    if repaid >= count then
        count = 0
    else
        count = count - repaid
    end
    ss, sk = k * p, k
end
local until_end = (sk + 1) * p - now
-- From the end of this window, w more windows, saturated.
local function after(w)
    return math.min(until_end + w * p, TIME_MAX)
end
local function reset_of(c)
    if c <= n then
        return until_end
    end
    return after(cdiv(c, n) - 1)
end
if need > 0 and count + need > n then
    local retry = TIME_MAX -- need above N never fits
    if need <= n then
        retry = after(cdiv(count + need - n, n) - 1)
    end
    local reset = reset_of(count)
    -- A denial writes nothing while the key lives exactly as long as this rate reads its
    -- state: under the rate that wrote it, the end of the same window (and of its debt), an
    -- instant whichever decision computes it. Under a longer P, or a smaller N that repays
    -- the count more slowly, the key would expire with the count still due and be admitted
    -- afresh; under a shorter one it would outlive the state. So it is written again, as
    -- this rate has it, and lives as long as the memory store keeps its entry.
    if stored and x ~= now + reset then
        save(reset, ss, count, now + reset)
    end
    return {0, 0, reset, retry}
end
count = math.min(count + take, COUNTER_MAX)
local reset = reset_of(count)
save(reset, ss, count, now + reset)
return {1, math.max(n - count, 0), reset}
