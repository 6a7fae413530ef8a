-- ngx_llm_router hook: a system prompt for every chat request.
--
--   location /v1/ {
--       llm_router on;
--       set $llm_system_prompt "You are a helpful assistant of ACME.";
--       set $llm_system_prompt_mode keep;    # keep | prepend | replace
--       llm_hook /etc/nginx/llm/system_prompt.lua;
--       proxy_pass http://$llm_upstream;
--   }
--
-- keep (the default): a request that starts with its own system message
-- keeps it; prepend: ours goes before it; replace: ours replaces its text.
-- Requests without "messages" (completions, embeddings) pass untouched.

return {
  request = function(req, ctx)
    local prompt = ctx.var("llm_system_prompt")
    if prompt == nil or prompt == "" or type(req.messages) ~= "table" then
      return
    end

    local mode = ctx.var("llm_system_prompt_mode") or "keep"
    local first = req.messages[1]

    if type(first) == "table" and first.role == "system" then
      if mode == "replace" then
        first.content = prompt
      elseif mode == "prepend" then
        table.insert(req.messages, 1, { role = "system", content = prompt })
      end
      return
    end

    table.insert(req.messages, 1, { role = "system", content = prompt })
  end,
}
