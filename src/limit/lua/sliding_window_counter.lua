-- sliding_window_counter: admits `need` units when prev*(P - elapsed) + (curr + need - 1)*P < N*P,
-- with prev and curr the units admitted in the previous and current aligned windows; the same
-- decision as src/limit/sliding_window_counter.c (remaining, reset, retry_after and the roll
-- of debt as defined there), on Redis's clock.
-- key (KEYS[1]): {s, c, p, x} (load and save, in the prelude; {s, c, p}, or a hash, before): s,
-- the current window's start (us), c = curr, p = prev, and x, the instant the key was written
-- to live until (now + reset). The start rather than the index, so that a change of P reads
-- it as src/limit/sliding_window_counter.c does.
-- ARGV: [1] N, [2] P (us), [3] need, [4] take; sluice sends a script only the arguments up to
-- the last it reads.
-- Returns {allowed, remaining, reset_us, retry_after_us, delay_us}, the last two left out
-- when 0.
-- Lua numbers are doubles: the script refuses N*P >= 2^53 (with P = 1 day, N <= 104249), so
-- that every product is exact: prev never exceeds N, and a curr + need - 1 at or above N is
-- decided by comparison (curr stays at most COUNTER_MAX, 2^50). Times past TIME_MAX (2^52)
-- saturate, as in C. math.fmod, unlike %, divides exactly.
-- n, p, need, take, div, cdiv, now, load and save come from the prelude
-- (src/limit/lua/prelude/prelude.lua).
local limit = n * p
if limit >= 9007199254740992 then
    return redis.error_reply('ERR sluice: N*P too large for sliding_window_counter')
end
local elapsed = math.fmod(now, p)
local k = (now - elapsed) / p
local ss, curr, prev, x = load('s', 'c', 'p', 'x')
local stored = ss ~= nil
curr, prev = curr or 0, prev or 0
-- After w windows: curr_w = max(0, curr - w*N), prev_w = min(max(0, curr - (w - 1)*N), N).
local function roll(c, w)
    return math.min(math.max(c - (w - 1) * n, 0), n), math.max(c - w * n, 0)
end
-- The stored window's index under the current P (whatever P it began under). A stored window
-- above the current one means the clock stepped back: keep its counters.
local sk = ss and div(ss, p)
if not ss then
    ss, curr, prev = k * p, 0, 0
elseif k > sk then
    prev, curr = roll(curr, k - sk)
    ss = k * p
end
local m = math.max(need - 1, 0)
-- Within a window with counters pv and cv (cv + m < N), the first offset at which
-- pv*(P - e) <= (N - cv - m)*P - 1; 0 when it holds from the start.
local function first_offset(pv, cv)
    if pv == 0 then
        return 0
    end
    return math.max(p - div((n - cv - m) * p - 1, pv), 0)
end
local weighted_prev = prev * (p - elapsed)
local allowed, remaining, retry = 0, 0, 0
if need == 0 or (curr + m < n and weighted_prev + (curr + m) * p < limit) then
    allowed = 1
    curr = math.min(curr + take, COUNTER_MAX)
    remaining = math.max(cdiv(limit - weighted_prev, p) - curr, 0)
elseif need > n then
    retry = TIME_MAX -- never fits
elseif curr + m < n then
    -- Later in this window, as prev's weight decays.
    retry = first_offset(prev, curr) - elapsed
else
    -- In the first later window whose curr leaves room, as its prev decays.
    local w = div(curr + m - n, n) + 1
    local pw, cw = roll(curr, w)
    retry = math.min((p - elapsed) + (w - 1) * p + first_offset(pw, cw), TIME_MAX)
end
local reset = 0
if curr > 0 then
    reset = math.min((p - elapsed) + cdiv(curr, n) * p, TIME_MAX)
elseif prev > 0 then
    reset = p - elapsed
end
-- A denial writes nothing while the key lives exactly as long as this rate reads its state:
-- under the rate that wrote it, the end of the window in which both counters weigh nothing,
-- an instant whichever decision computes it. Under a longer P, or a smaller N that rolls the
-- counters off more slowly, the key would expire while they still weigh; under a shorter one
-- it would outlive them. So it is written again, as this rate has it, and lives as long as
-- the memory store keeps its entry.
if allowed == 1 or (stored and x ~= now + reset) then
    save(reset, ss, curr, prev, now + reset)
end
return {allowed, remaining, reset, retry}
