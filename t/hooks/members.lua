-- test hook: lists the members of the body it gets, sorted, and the value
-- of each (tables by their kind)
return {
  request = function(req, ctx)
    local seen = {}
    for k, v in pairs(req) do
      if type(v) == "table" then
        v = "table"
      end
      seen[#seen + 1] = k .. "=" .. tostring(v)
    end
    table.sort(seen)
    req.seen = table.concat(seen, ",")
  end,
}
