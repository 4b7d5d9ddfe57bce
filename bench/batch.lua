-- Benchmark B: POST /v1/batch, 100 events per request, a unique messageId per event.
-- Usage: wrk -s bench/batch.lua URL -- RUN_PREFIX
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

EVENTS_PER_REQUEST = 100

local parts = {}

function request()
  for i = 1, EVENTS_PER_REQUEST do parts[i] = next_message() end
  local body = '{"batch":[' .. table.concat(parts, ",") .. '],"sentAt":"' .. ts .. '"}'
  return wrk.format("POST", "/v1/batch", headers, body)
end
