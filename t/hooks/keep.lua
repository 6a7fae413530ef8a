-- request() keeps its document for response(): what request() read stays;
-- the rest cannot be read once request() has returned
return {
  request = function(req, ctx)
    ctx.state.req = req
    local _ = req.model
  end,

  response = function(resp, ctx)
    local kept = ctx.state.req
    llm.log("warn", "kept model " .. tostring(kept.model))
    local _, err = pcall(function() return kept.messages end)
    llm.log("warn", "read: " .. tostring(err))
    _, err = pcall(llm.json_encode, kept)
    llm.log("warn", "encode: " .. tostring(err))
    _, err = pcall(pairs, kept)
    llm.log("warn", "pairs: " .. tostring(err))
    llm.log("warn", "metatable: " .. tostring(getmetatable(resp)))
    _, err = pcall(setmetatable, resp, {})
    llm.log("warn", "setmetatable: " .. tostring(err))
    llm.log("warn", "resp object " .. resp.object)
  end,
}
