-- test hook: what a client sends, handed to llm.route(), llm.log() and
-- error() as it is (req.what says which, req.text is the argument), or
-- writes req.fields into the body ("write")
return {
  request = function(req, ctx)
    local what = req.what
    if what == "route" then
      llm.route(req.text)
    elseif what == "log" then
      llm.log("warn", req.text)
    elseif what == "error" then
      error(req.text, 0)
    elseif what == "write" then
      for k, v in pairs(req.fields) do req[k] = v end
      req.fields = nil
    end
  end,
}
