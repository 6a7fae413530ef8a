-- test hook: must see neither the global nor the change of env_a.lua
return {
  request = function(req, ctx)
    req.b_sees = tostring(leaked)
    req.b_upper = string.upper("x")
    req.b_stream = ctx.stream
  end,
}
