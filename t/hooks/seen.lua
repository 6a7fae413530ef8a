-- test hook: marks what it saw (t/027)
return {
  response = function(resp, ctx)
    resp.seen = true
  end,
  chunk = function(ev, ctx)
    ev.seen = true
  end,
}
