-- test hook: removes, reads, changes nested values, counts with pairs
return {
  request = function(req, ctx)
    req.drop_me = nil
    req.messages[1].content = "changed"
    req.absent = req.nothing
    req.temperature = req.temperature
    local n = 0
    for _ in pairs(req) do n = n + 1 end
    req.count = n
  end,
}
