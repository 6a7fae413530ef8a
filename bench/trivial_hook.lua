-- bench: the smallest request hook that does something: it reads the body
-- as a table and returns nothing, so the original bytes go on
return {
  request = function(req, ctx)
    if req.model == nil then
      llm.reject(400, "no model", "model_required")
    end
  end,
}
