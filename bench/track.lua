-- Benchmark A: POST /v1/track, one event per request, a unique messageId per request.
-- Usage: wrk -s bench/track.lua URL -- RUN_PREFIX
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

EVENTS_PER_REQUEST = 1

function request()
  return wrk.format("POST", "/v1/track", headers, next_message())
end
