-- wrk script for bench/throughput.py: POST one fixed JSON body on every request and report
-- the run as one line of JSON.
--
-- Environment (read by every Lua state wrk creates):
--   BENCH_BODY_FILE    the request body (bytes sent as they are)
--   BENCH_RESULT_FILE  where done() writes the JSON summary
--   BENCH_TRACEPARENT  optional: a W3C traceparent header sent with every request
--
-- Each response's status is counted, and the batch size of its Server-Timing header
-- (batch;desc="size=N", sent by the service) is summed, per wrk thread; done() adds them up.

local function read_file(path)
  local file = assert(io.open(path, "rb"), "cannot open " .. tostring(path))
  local data = file:read("*a")
  file:close()
  return data
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = read_file(assert(os.getenv("BENCH_BODY_FILE"), "BENCH_BODY_FILE is not set"))
if os.getenv("BENCH_TRACEPARENT") then
  wrk.headers["traceparent"] = os.getenv("BENCH_TRACEPARENT")
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
  non_2xx = 0
  batched = 0
  batch_sum = 0
  batch_max = 0
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status < 200 or status > 299 then
    non_2xx = non_2xx + 1
  end
  local timing = headers["server-timing"] or headers["Server-Timing"]
  if timing then
    local size = tonumber(string.match(timing, 'batch;desc="size=(%d+)"'))
    if size then
      batched = batched + 1
      batch_sum = batch_sum + size
      if size > batch_max then
        batch_max = size
      end
    end
  end
end

function done(summary, latency, requests)
  local total_non_2xx, total_batched, total_batch_sum, total_batch_max = 0, 0, 0, 0
  local status_counts = {}
  for _, thread in ipairs(threads) do
    total_non_2xx = total_non_2xx + thread:get("non_2xx")
    total_batched = total_batched + thread:get("batched")
    total_batch_sum = total_batch_sum + thread:get("batch_sum")
    total_batch_max = math.max(total_batch_max, thread:get("batch_max"))
    for status, count in pairs(thread:get("statuses")) do
      status_counts[status] = (status_counts[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(status_counts) do
    table.insert(parts, string.format('"%d": %d', status, count))
  end
  local errors = summary.errors
  local out = assert(io.open(assert(os.getenv("BENCH_RESULT_FILE"), "BENCH_RESULT_FILE is not set"), "w"))
  out:write(string.format(
    '{"duration_us": %d, "requests": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"non_2xx": %d, "statuses": {%s}, ' ..
    '"latency_us": {"min": %d, "mean": %.3f, "stdev": %.3f, "max": %d, ' ..
    '"p50": %d, "p75": %d, "p90": %d, "p99": %d, "p999": %d}, ' ..
    '"batched_responses": %d, "batch_size_sum": %d, "batch_size_max": %d}\n',
    summary.duration, summary.requests, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    total_non_2xx, table.concat(parts, ", "),
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9),
    total_batched, total_batch_sum, total_batch_max))
  out:close()
end
