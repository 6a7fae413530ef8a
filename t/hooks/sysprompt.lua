-- test hook: puts a system message first
return {
  request = function(req, ctx)
    table.insert(req.messages, 1, { role = "system", content = "Be brief." })
  end,
}
