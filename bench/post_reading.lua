-- wrk script: POST one unique reading per request, then print a JSON summary line.
-- Each thread numbers its own requests, so (thread, counter) makes date_created unique.
-- An argument after `--` is a bearer token to send with every request.

local threads = {}

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  not_created = 0
  first_date = 1800000000 + thread_id * 100000000
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if args[1] then
    wrk.headers["Authorization"] = "Bearer " .. args[1]
  end
end

function request()
  counter = counter + 1
  local kind = (counter % 2 == 0) and "temperature" or "humidity"
  local body = string.format('{"type":"%s","value":%d,"date_created":%d}',
                             kind, counter % 101, first_date + counter)
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status ~= 201 then
    not_created = not_created + 1
  end
end

function done(summary, latency, requests)
  local not_201 = 0
  for _, thread in ipairs(threads) do
    not_201 = not_201 + thread:get("not_created")
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,' ..
    '"socket_errors":%d,"timeouts":%d,"not_201":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write, e.timeout, not_201))
end
