-- ngx_llm_router hook: each API key may use only the models listed for it.
--
--   map $http_authorization $llm_allowed_models {
--       "Bearer key-team-a"   "llama3-8b,qwen-*";
--       "Bearer key-admin"    "*";
--       default               "";
--   }
--   location /v1/ {
--       llm_router on;
--       llm_hook /etc/nginx/llm/model_allowlist.lua;
--       proxy_pass http://$llm_upstream;
--   }
--
-- $llm_allowed_models is a comma-separated list of model names as clients
-- send them; "*" matches any run of characters.  It can as well come from
-- a header an auth_request service sets (map $http_x_allowed_models ...).
-- An empty list allows nothing: 403 model_not_allowed.

-- "*" matches any run of characters.  Matched byte by byte, not with a
-- Lua pattern: ".*" backtracks, so a pattern with k stars would cost the
-- k-th power of the name's length (the client's) inside one library call,
-- where no hook limit can stop it.  Here every step counts.
local function glob(pattern, name)
  local pi, ni, star, mark = 1, 1, nil, 0

  while ni <= #name do
    local pc = pattern:byte(pi)
    if pc == 42 then                                  -- "*"
      star, mark, pi = pi, ni, pi + 1
    elseif pc == name:byte(ni) then
      pi, ni = pi + 1, ni + 1
    elseif star then                                  -- the star takes one more
      mark = mark + 1
      pi, ni = star + 1, mark
    else
      return false
    end
  end

  while pattern:byte(pi) == 42 do
    pi = pi + 1
  end

  return pi > #pattern
end

return {
  request = function(req, ctx)
    local allowed = ctx.var("llm_allowed_models") or ""

    for item in allowed:gmatch("[^,]+") do
      item = item:match("^%s*(.-)%s*$")
      if item ~= "" and glob(item, ctx.model) then
        return
      end
    end

    llm.reject(403, "this key may not use the model \"" .. ctx.model .. "\"",
               "model_not_allowed")
  end,
}
