-- sliding_window_counter: admits while prev*(P-elapsed) + curr*P < N*P, the weighted count of
-- the previous and current aligned windows, in exact integers.
-- KEYS[1] hash {w = current window start, c = its count, p = previous window's count}.
-- ARGV: N, P (us), burst, delay, member. Returns {allowed, remaining, reset_us, retry_after_us,
-- delay_us}. Lua numbers are doubles: the script refuses N*P >= 2^53 (e.g. 1 day allows
-- N <= 104249), so every product below stays exact.
local n = tonumber(ARGV[1])
local p = tonumber(ARGV[2])
if not n or not p or n < 1 or p < 1 then
    return redis.error_reply('ERR sluice: bad N or P')
end
local np = n * p
if np >= 9007199254740992 then
    return redis.error_reply('ERR sluice: N*P too large for sliding_window_counter')
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local win = now - now % p
local st = redis.call('HMGET', KEYS[1], 'w', 'c', 'p')
local w = tonumber(st[1])
local curr, prev = 0, 0
if w == win then
    curr, prev = tonumber(st[2]) or 0, tonumber(st[3]) or 0
elseif w == win - p then
    prev = tonumber(st[2]) or 0
end
local elapsed = now - win
local weighted = prev * (p - elapsed) + curr * p
local allowed = 0
if weighted < np then
    allowed = 1
    curr = curr + 1
    weighted = weighted + p
end
-- Each further request adds P; it is admitted while the sum stays below N*P.
local remaining = 0
if weighted < np then
    remaining = math.floor((np - weighted - 1) / p) + 1
end
local reset = 0
if curr > 0 then
    reset = win + 2 * p - now
elseif prev > 0 then
    reset = win + p - now
end
local retry = 0
if allowed == 0 then
    -- Earliest elapsed time e' at which the estimate drops below N: in this window when
    -- curr < N (prev*(P-e') <= (N-curr)*P - 1), else in the next, where curr becomes prev.
    if curr < n then
        retry = win + p - math.floor(((n - curr) * p - 1) / prev) - now
    else
        retry = win + p + math.max(0, p - math.floor((np - 1) / curr)) - now
    end
end
if allowed == 1 then
    redis.call('HSET', KEYS[1], 'w', win, 'c', curr, 'p', prev)
    redis.call('PEXPIRE', KEYS[1], math.ceil(reset / 1000))
end
return {allowed, remaining, reset, retry, 0}
