-- Shared by track.lua and batch.lua (loaded with dofile). wrk runs one LuaJIT state per
-- thread plus one for setup/done; everything here is per state.
--
-- Unique messageIds: "<run>-<thread>-<counter>". <run> comes from the script arguments
-- (wrk ... -- RUN_PREFIX), so a warm-up and the measured run never repeat an id; the
-- thread number is handed out in setup(); the counter is per thread.

local threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
  table.insert(threads, thread)
end

run_prefix = "r"
counter = 0
ok = 0
other = 0
sample_other = ""
ts = ""

local key = os.getenv("BENCH_WRITE_KEY") or "bench_write_key"

-- base64 of "key:" for the Basic auth header (Segment's clients send the key as user).
local function b64(data)
  local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  return ((data:gsub(".", function(x)
    local r, byte = "", x:byte()
    for i = 8, 1, -1 do r = r .. (byte % 2 ^ i - byte % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return chars:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#data % 3 + 1])
end

headers = {
  ["Content-Type"] = "application/json",
  ["Authorization"] = "Basic " .. b64(key .. ":"),
}

function init(args)
  run_prefix = args[1] or "r"
  ts = os.date("!%Y-%m-%dT%H:%M:%S.000Z")
end

-- One Segment "Order Completed" track call, ~600 bytes of JSON, every id unique.
local TEMPLATE = '{"type":"track","messageId":"%s","userId":"user-%d","anonymousId":"anon-%s",'
  .. '"event":"Order Completed","timestamp":"%s",'
  .. '"properties":{"order_id":"o-%s","revenue":42.5,"currency":"USD","coupon":"WELCOME10",'
  .. '"products":[{"product_id":"sku-1001","name":"Blue T-Shirt","price":21.25,"quantity":2,'
  .. '"category":"Apparel"}]},'
  .. '"context":{"ip":"203.0.113.7","userAgent":"Mozilla/5.0 (X11; Linux x86_64) '
  .. 'AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",'
  .. '"page":{"url":"https://shop.example.com/checkout/thank-you","referrer":"https://shop.example.com/cart"},'
  .. '"traits":{"email":"customer%d@example.com","phone":"+1415555%04d","firstName":"Ada","lastName":"Lovelace"},'
  .. '"library":{"name":"analytics-python","version":"2.3.3"}}}'

-- counter counts messages generated, i.e. events sent (wrk writes every request it builds).
function next_message()
  counter = counter + 1
  local id = run_prefix .. "-" .. tid .. "-" .. counter
  return string.format(TEMPLATE, id, counter % 50000, id, ts, id, counter % 50000, counter % 10000)
end

function response(status, hdrs, body)
  if status == 200 then
    ok = ok + 1
  else
    other = other + 1
    if other <= 3 then sample_other = sample_other .. status .. " " .. (body or "") .. " | " end
  end
end

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

function done(summary, latency, requests)
  local total_ok, total_other, sent, samples = 0, 0, 0, ""
  for _, thread in ipairs(threads) do
    total_ok = total_ok + (thread:get("ok") or 0)
    sent = sent + (thread:get("counter") or 0)
    total_other = total_other + (thread:get("other") or 0)
    samples = samples .. (thread:get("sample_other") or "")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"ok":%d,"non200":%d,"events_per_request":%d,"sent_events":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"mean":%.1f,"max":%d},'
      .. '"sample_non200":%s}\n',
    summary.requests, summary.duration, total_ok, total_other, EVENTS_PER_REQUEST, sent,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max, json_string(samples)))
end
