-- wrk script: POST one unique reading per request, then print a JSON summary line.
-- Each thread numbers its own requests, so (thread, counter) makes date_created unique.
-- Arguments after `--`: a bearer token to send with every request, and `devices=N` to spread the
-- readings over N devices, _N_ in the URL's path standing for each one's number.

local threads = {}

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  not_created = 0
  first_date = 1800000000 + thread_id * 100000000
  devices = 1
  path_template = wrk.path
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  for _, arg in ipairs(args) do
    local count = string.match(arg, "^devices=(%d+)$")
    if count then
      devices = tonumber(count)
    else
      wrk.headers["Authorization"] = "Bearer " .. arg
    end
  end
end

function request()
  counter = counter + 1
  local kind = (counter % 2 == 0) and "temperature" or "humidity"
  local body = string.format('{"type":"%s","value":%d,"date_created":%d}',
                             kind, counter % 101, first_date + counter)
  local path = string.gsub(path_template, "_N_", tostring((thread_id * 7919 + counter) % devices))
  return wrk.format(nil, path, nil, body)
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
