-- test hook: llm.reject() and llm.set_header() given what the client sent
-- (req.what says which; the other members are the arguments)
return {
  request = function(req, ctx)
    local what = req.what
    if what == "reject" then
      llm.reject(req.status or 400, req.message, req.code)
    elseif what == "reject-pcall" then
      pcall(llm.reject, 400, "caught?", req.code)
      req.escaped = true
    elseif what == "header" then
      local results = {}
      for i, h in ipairs(req.headers) do
        local ok, err = pcall(llm.set_header, h[1], h[2])
        results[i] = ok and "ok" or tostring(err):match("llm%.set_header: .*")
      end
      req.headers = nil
      req.results = results
    end
  end,
}
