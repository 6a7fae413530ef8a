-- test hook: string members read and left, changed to other bytes of the
-- same length, assigned their own value, and an escaped one read
return {
  request = function(req, ctx)
    local same = req.same
    req.swap = "abcd"
    req.again = req.again
    local esc = req.esc
    req.seen = same .. "/" .. esc
  end,
}
