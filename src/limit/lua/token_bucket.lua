-- token_bucket: a bucket of at most `burst` tokens refilled continuously at N per P; a
-- request takes one token. The same decision as src/limit/token_bucket.c: GCRA with times
-- scaled by N (us * N), where one token is worth exactly P.
-- KEYS[1]: hash {u, f, n}: tat, the instant the bucket is full again, as u*N + f (0 <= f < N),
-- so that no double ever holds a scaled absolute time, and the N it was written under; a
-- missing key is a full bucket.
-- ARGV: [1] N, [2] P (us), [3] burst.
-- Returns {allowed, remaining, reset_us, retry_after_us, delay_us}.
-- Lua numbers are doubles: the script refuses (burst + 1)*P + N >= 2^53, which bounds every
-- scaled difference it computes; N is at most 10^9 < 2^30, as rescale needs.
-- n, p, cdiv, rescale and now come from the prelude (src/limit/lua/prelude/prelude.lua).
local b = tonumber(ARGV[3])
if not b or b < 0 then
    return redis.error_reply('ERR sluice: bad burst')
end
local capacity = b * p
if capacity + p + n >= 9007199254740992 then
    return redis.error_reply('ERR sluice: burst*P too large for token_bucket')
end
local st = redis.call('HMGET', KEYS[1], 'u', 'f', 'n')
local u, f, sn = tonumber(st[1]), tonumber(st[2]), tonumber(st[3])
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
-- lack = tat - now*N: the tokens missing from a full bucket, times P.
local lack = (u - now) * n + f
if lack + p <= capacity then
    lack = lack + p
    f = f + p
    local r = math.fmod(f, n)
    u, f = u + (f - r) / n, r
    local reset = cdiv(lack, n)
    redis.call('HSET', KEYS[1], 'u', u, 'f', f, 'n', n)
    redis.call('PEXPIRE', KEYS[1], math.ceil(reset / 1000))
    return {1, (capacity - lack - math.fmod(capacity - lack, p)) / p, reset, 0, 0}
end
local retry = p -- burst 0: no instant would do
if b > 0 then
    retry = cdiv(lack - (capacity - p), n)
end
return {0, 0, cdiv(lack, n), retry, 0}
