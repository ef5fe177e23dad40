-- wrk script for scripts/soak.sh: a throttled, steady mix of every kind of request sluice
-- handles (see the routes of the configuration soak.sh writes), counting responses by status.
--   wrk -t1 -c16 -d30m -s load.lua http://127.0.0.1:PORT -- PACE_MS
-- Each connection waits about PACE_MS between requests, which is what keeps the load (and
-- the machine) steady. At the end it prints "soak: status CODE COUNT" lines, and
-- "soak: bad429 N" for 429s naming a route that has no limit (there must be none).

local pace = 50
statuses = {} -- global: done() reads it with thread:get()
bad429 = 0
local host = "localhost"

-- Routes whose limits may answer 429; anything else answering 429 is a fault.
local limited = { limited = true, keys = true, delayed = true, shared = true, window = true }

local threads = {}

function setup(thread)
    thread:set("seed", math.random(1, 2 ^ 30))
    threads[#threads + 1] = thread
end

function init(args)
    pace = tonumber(args[1] or "") or pace
    math.randomseed((seed or 1) + os.time())
    host = wrk.headers["Host"] or host
end

function delay()
    return math.random(math.floor(pace / 2), pace + math.floor(pace / 2))
end

local function get(path, headers)
    local h = headers or {}
    h["Host"] = host
    return wrk.format("GET", path, h)
end

-- A body of n bytes, one byte value per request so the upstream's hash changes.
local function body(n)
    return string.rep(string.char(65 + math.random(0, 25)), n)
end

local function chunked_upload()
    local parts = { "POST /upload HTTP/1.1\r\nHost: " .. host .. "\r\nTransfer-Encoding: chunked\r\n\r\n" }
    for _ = 1, math.random(1, 4) do
        local n = math.random(1, 3000)
        parts[#parts + 1] = string.format("%x\r\n%s\r\n", n, body(n))
    end
    parts[#parts + 1] = "0\r\n\r\n"
    return table.concat(parts)
end

function request()
    local r = math.random(1, 100)
    if r <= 15 then -- allowed: a generous limit
        return get("/api/items?i=" .. math.random(1, 1000))
    elseif r <= 25 then -- one bucket for the route: some 429s
        return get("/api/limited")
    elseif r <= 45 then -- many distinct keys on the memory store: more than max_keys
        return get("/api/keys", { ["X-Api-Key"] = "k" .. math.random(1, 20000) })
    elseif r <= 52 then -- leaky bucket: delayed, and 429 when its queue is full
        return get("/api/delayed")
    elseif r <= 67 then -- Redis store, many keys
        return get("/api/shared", { ["X-Api-Key"] = "r" .. math.random(1, 5000) })
    elseif r <= 72 then -- Redis store, one key
        return get("/api/window")
    elseif r <= 80 then -- request body with Content-Length
        return wrk.format("POST", "/upload", { ["Host"] = host }, body(math.random(1, 8192)))
    elseif r <= 84 then -- chunked request body
        return chunked_upload()
    elseif r <= 89 then -- chunked response
        return get("/stream/" .. math.random(1, 16384))
    elseif r <= 90 then -- Content-Length response
        return get("/stream/" .. math.random(1, 16384) .. "?cl=1")
    elseif r <= 91 then -- bodiless responses, one carrying Content-Length
        return get("/status/304")
    elseif r <= 92 then
        return get("/status/204")
    elseif r <= 96 then -- unmatched, and a new connection after it
        return get("/other/" .. math.random(1, 100), { ["Connection"] = "close" })
    elseif r <= 98 then -- HTTP/1.0: a new connection after it
        return "GET /api/items HTTP/1.0\r\nHost: " .. host .. "\r\n\r\n"
    else -- an underscore spelling of the key header: dropped, so the limit is skipped
        return get("/api/keys", { ["X_Api_Key"] = "u" .. math.random(1, 20000) })
    end
end

function response(status, headers, resp_body)
    local k = tostring(status)
    statuses[k] = (statuses[k] or 0) + 1
    if status == 429 then
        local route = resp_body:match('"route":"([^"]*)"')
        if not limited[route or ""] then
            bad429 = bad429 + 1
        end
    end
end

function done(summary, latency, requests)
    local total, bad = {}, 0
    for _, t in ipairs(threads) do
        for code, n in pairs(t:get("statuses")) do
            total[code] = (total[code] or 0) + n
        end
        bad = bad + t:get("bad429")
    end
    for code, n in pairs(total) do
        io.write(string.format("soak: status %s %d\n", code, n))
    end
    local e = summary.errors
    io.write(string.format("soak: bad429 %d\n", bad))
    io.write(string.format("soak: errors connect %d read %d write %d timeout %d\n", e.connect, e.read,
        e.write, e.timeout))
    io.write(string.format("soak: latency_ms p50 %.2f p99 %.2f max %.2f\n", latency:percentile(50) / 1000,
        latency:percentile(99) / 1000, latency.max / 1000))
end
