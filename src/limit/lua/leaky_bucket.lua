-- leaky_bucket: requests leave one every T = P/N (GCRA); an early request waits in a queue of
-- `burst` places, and is denied when the queue is full. The same decision as
-- src/limit/leaky_bucket.c (burst B admits B + 1 at once, as nginx limit_req does): times are
-- scaled by N (us * N), so that T is exactly P.
-- key (KEYS[1]): {u, f, n} (load and save, in the prelude; a hash {u, f, n} before): tat, the next
-- free departure time, as u*N + f (0 <= f < N), so that no double ever holds a scaled absolute
-- time, and the N it was written under; a missing key is an empty queue.
-- ARGV: [1] N, [2] P (us), [3] need and [4] take (unused: leaky_bucket takes no cost), [5]
-- burst, [6] delay (0|1).
-- Returns {allowed, remaining, reset_us, retry_after_us, delay_us}, the last two left out
-- when 0.
-- Lua numbers are doubles: the script refuses (burst + 1)*P + N >= 2^53, which bounds every
-- scaled difference it computes; N is at most 10^9 < 2^30, as rescale needs.
-- n, p, cdiv, rescale, now, load and save come from the prelude
-- (src/limit/lua/prelude/prelude.lua).
local b = tonumber(ARGV[5])
if not b or b < 0 then
    return redis.error_reply('ERR sluice: bad burst')
end
local queue = b * p
if queue + p + n >= 9007199254740992 then
    return redis.error_reply('ERR sluice: burst*P too large for leaky_bucket')
end
local u, f, sn = load('u', 'f', 'n')
-- Written under another N: tat stays the same instant, rounded toward later.
if u and f and sn and sn ~= n then
    f = rescale(f, sn)
    if f >= n then
        u, f = u + 1, f - n
    end
end
if not u or not f or u < now then
    u, f = now, 0 -- departure = max(tat, now)
end
local wait = (u - now) * n + f
if wait > queue then
    return {0, 0, cdiv(wait, n), cdiv(wait - queue, n)}
end
f = f + p
local r = math.fmod(f, n)
u, f = u + (f - r) / n, r
local ahead = wait + p -- the wait of the next request
local remaining = 0
if ahead <= queue then
    remaining = (queue - ahead - math.fmod(queue - ahead, p)) / p + 1
end
local reset = cdiv(ahead, n)
save(reset, u, f, n)
local delay = 0
if ARGV[6] == '1' then
    delay = cdiv(wait, n)
end
return {1, remaining, reset, 0, delay}
