-- ngx_llm_router hook: requests whose prompt contains a denied term get a
-- 400 prompt_rejected, and are logged; optionally prompts over a size.
--
--   location /v1/ {
--       llm_router on;
--       set $llm_deny_list "ignore previous instructions,rm -rf";
--       set $llm_max_prompt_chars 100000;     # optional
--       llm_hook /etc/nginx/llm/prompt_guard.lua;
--       proxy_pass http://$llm_upstream;
--   }
--
-- Terms are separated by commas and matched case-insensitively as plain
-- text (no patterns) in chat message texts, "prompt" and "input".

local function texts(req)
  local list = {}
  local function add(v)
    if type(v) == "string" then
      list[#list + 1] = v
    elseif type(v) == "table" then
      for k, x in pairs(v) do
        if type(x) == "string" and (type(k) == "number" or k == "text") then
          list[#list + 1] = x
        elseif type(x) == "table" and type(k) == "number" then
          add(x)
        end
      end
    end
  end
  if type(req.messages) == "table" then
    for _, m in ipairs(req.messages) do
      if type(m) == "table" then add(m.content) end
    end
  end
  add(req.prompt)
  add(req.input)
  return list
end

return {
  request = function(req, ctx)
    local list = texts(req)

    local max = tonumber(ctx.var("llm_max_prompt_chars") or "")
    if max then
      local total = 0
      for _, t in ipairs(list) do total = total + (utf8.len(t) or #t) end
      if total > max then
        llm.reject(400, "the prompt is longer than " .. max
                   .. " characters", "prompt_too_long")
      end
    end

    local deny = ctx.var("llm_deny_list")
    if deny == nil or deny == "" then return end

    for term in deny:gmatch("[^,]+") do
      term = term:match("^%s*(.-)%s*$"):lower()
      if term ~= "" then
        for _, t in ipairs(list) do
          if t:lower():find(term, 1, true) then
            llm.log("warn", "prompt_guard: denied term \"" .. term
                    .. "\" in a request for " .. ctx.model)
            llm.reject(400, "the prompt contains a denied term",
                       "prompt_rejected")
          end
        end
      end
    end
  end,
}
