-- fixed_window: admits while fewer than N were admitted in the aligned window [k*P, (k+1)*P).
-- KEYS[1] hash {w = window start, c = admitted in it}. ARGV: N, P (us), burst, delay, member.
-- Returns {allowed, remaining, reset_us, retry_after_us, delay_us}.
-- Lua numbers are doubles: every value stays below 2^53 while P < 2^52 us, as now (~2^51 us
-- since 1970) plus P does.
local n = tonumber(ARGV[1])
local p = tonumber(ARGV[2])
if not n or not p or n < 1 or p < 1 then
    return redis.error_reply('ERR sluice: bad N or P')
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local win = now - now % p
local st = redis.call('HMGET', KEYS[1], 'w', 'c')
local count = 0
if tonumber(st[1]) == win then
    count = tonumber(st[2]) or 0
end
local reset = win + p - now
if count >= n then
    return {0, 0, reset, reset, 0}
end
count = count + 1
redis.call('HSET', KEYS[1], 'w', win, 'c', count)
redis.call('PEXPIRE', KEYS[1], math.ceil(reset / 1000))
return {1, n - count, reset, 0, 0}
