-- test hook: copies ctx into the body, and sets a header for the engine
return {
  request = function(req, ctx)
    req.seen = {
      model = ctx.model, target = ctx.target, upstream = ctx.upstream,
      engine = ctx.engine, stream = ctx.stream,
      header = ctx.headers["x-test"], var = ctx.var("request_method"),
      missing = ctx.var("no_such_variable_here") == nil,
    }
    llm.set_header("X-From-Hook", "yes")
  end,
}
