-- token_bucket: a bucket of at most `burst` tokens refilled continuously at N per P; a
-- request takes `need` tokens when they are all there, and a charge takes `take` into debt.
-- The same decision as src/limit/token_bucket.c: GCRA with times scaled by N (us * N), where
-- one token is worth exactly P.
-- key (KEYS[1]): {u, f, n} (load and save, in the prelude; a hash {u, f, n} before): tat, the instant
-- the bucket is full again, as u*N + f (0 <= f < N), so that no double ever holds a scaled
-- absolute time, and the N it was written under; a missing key is a full bucket.
-- ARGV: [1] N, [2] P (us), [3] need, [4] take, [5] burst (N when left out).
-- Returns {allowed, remaining, reset_us, retry_after_us, delay_us}, the last two left out
-- when 0.
-- Lua numbers are doubles: the script refuses (burst + 1)*P + N >= 2^53, which bounds every
-- scaled difference it computes, and the lack tat - now*N it stores is at most 2^53 - 1 (as
-- in C): a debt beyond is forgiven. need*P is at most burst*P; take*P may pass 2^53, inexact
-- but then above the bound it saturates at. N is at most 10^9 < 2^30, as rescale needs.
-- n, p, need, take, cdiv, rescale, now, load and save come from the prelude
-- (src/limit/lua/prelude/prelude.lua).
local b = (not ARGV[5] or ARGV[5] == ARGV[1]) and n or tonumber(ARGV[5])
if not b or b < 0 then
    return redis.error_reply('ERR sluice: bad burst')
end
local capacity = b * p
if capacity + p + n >= 9007199254740992 then
    return redis.error_reply('ERR sluice: burst*P too large for token_bucket')
end
local LACK_MAX = 9007199254740991 -- 2^53 - 1
local u, f, sn = load('u', 'f', 'n')
-- Written under another N: tat stays the same instant, rounded toward later.
if u and f and sn and sn ~= n then
    f = rescale(f, sn)
    if f >= n then
        u, f = u + 1, f - n
    end
end
if not u or not f or u < now then
    u, f = now, 0 -- tat = max(tat, now)
end
-- lack = tat - now*N: the tokens missing from a full bucket, times P (below 2^53).
local lack = (u - now) * n + f
if need == 0 or (need <= b and lack + need * p <= capacity) then
    lack = math.min(lack + take * p, LACK_MAX)
    local r = math.fmod(lack, n)
    u, f = now + (lack - r) / n, r
    local reset = math.min(cdiv(lack, n), TIME_MAX)
    save(reset, u, f, n)
    local remaining = 0
    if lack < capacity then
        remaining = (capacity - lack - math.fmod(capacity - lack, p)) / p
    end
    return {1, remaining, reset}
end
local retry = p -- burst 0: no instant would do
if b > 0 and need > b then
    retry = TIME_MAX -- never fits
elseif b > 0 then
    retry = math.min(cdiv(lack - (capacity - need * p), n), TIME_MAX)
end
return {0, 0, math.min(cdiv(lack, n), TIME_MAX), retry}
