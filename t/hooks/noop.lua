-- test hook: reads, changes nothing
return {
  request = function(req, ctx)
    local n = #req.messages
    return nil
  end,
}
