-- test hook (t/033-restructure.t): what ctx gives for keys that are not
-- its fields
return {
  request = function(req, ctx)
    req.seen = { empty = type(ctx[""]), error = type(ctx.error),
                 session = type(ctx.session) }
  end,
}
