-- test hook: rejects, routes, replaces
return {
  request = function(req, ctx)
    local text = req.messages and req.messages[1] and req.messages[1].content
    if text == "forbidden" then
      llm.reject(403, "that is not allowed", "policy_violation")
      return
    end
    if text == "pcall-reject" then
      pcall(llm.reject, 451, "caught?", "still_rejected")
      req.escaped = true
      return
    end
    if text == "route" then
      llm.route("other")
      return
    end
    if text == "replace" then
      return { model = req.model, replaced = true }
    end
    if text == "bad-return" then
      return 42
    end
    if text == "error" then
      error("boom")
    end
  end,
}
