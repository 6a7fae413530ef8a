-- wrk script: POST the JSON body in the file named by $BENCH_BODY.
-- wrk adds Content-Length itself; the request is built once per thread.

local path = os.getenv("BENCH_BODY")
if not path then
   error("body.lua: set BENCH_BODY to the request body file")
end

local f = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
