-- wrk's side of bench.payments (wrk -s load.lua URL -- KIND AUTH MERCHANT), KIND one of payment
-- (POST /v1/payments, a fresh Idempotency-Key each), bare (the bare DRF insert) and alpha (alpha's
-- own authorize, a fresh merchant reference each). Answers are checked: a payment must come back
-- 201 with "status": "succeeded", a bare insert 201, alpha 200 or 201. Prints one JSON line with
-- the counts and latencies.
local threads = {}

function setup(thread)
  thread:set("tid", tostring(#threads + 1))
  table.insert(threads, thread)
end

function init(args)
  kind, auth, merchant = args[1], args[2], args[3]
  counter, ok, bad = 0, 0, 0
  prefix = "wrk-" .. tid .. "-" .. tostring(math.random(1, 2147483647)) .. "-"
  if kind == "payment" then
    path = "/v1/payments"
    body = '{"amount": 1000, "currency": "EUR", "payment_method_data": {"type": "card", "card": '
      .. '{"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}}'
  elseif kind == "alpha" then
    path = "/v1/authorizations"
  else
    path = "/bench/bare"
    body = '{"merchant": "' .. merchant .. '"}'
  end
end

function request()
  counter = counter + 1
  local headers = {["Content-Type"] = "application/json"}
  if kind == "payment" then
    headers["Authorization"] = "Bearer " .. auth
    headers["Idempotency-Key"] = prefix .. counter
  elseif kind == "alpha" then
    headers["Authorization"] = "Bearer " .. auth
    body = '{"merchant_reference": "att_' .. prefix .. counter .. '", "amount": 1000, "currency": "EUR", '
      .. '"capture": true, "initiator": "customer", "store_card": false, "description": "", "metadata": {}, '
      .. '"card": {"number": "4242424242424242", "expiry_month": 12, "expiry_year": 2034, "cvc": "123"}}'
  end
  return wrk.format("POST", path, headers, body)
end

function response(status, headers, body)
  if (status == 201 and (kind ~= "payment" or body:find('"status": *"succeeded"')))
      or (kind == "alpha" and status == 200) then
    ok = ok + 1
  else
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local good, wrong = 0, 0
  for _, t in ipairs(threads) do
    good = good + t:get("ok")
    wrong = wrong + t:get("bad")
  end
  io.write(string.format(
    '{"ok": %d, "errors": %d, "socket_errors": %d, "seconds": %.3f, "p50_ms": %.3f, "p99_ms": %.3f}\n',
    good, wrong, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
