-- test hook: adds one field, so the whole body is encoded again
return {
  request = function(req, ctx)
    req.hooked = true
  end,
}
