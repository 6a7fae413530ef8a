-- test hook: the whole document encoded and decoded again, returned
return {
  request = function(req, ctx)
    local copy = llm.json_decode(llm.json_encode(req))
    copy.hooked = true
    return copy
  end,
}
