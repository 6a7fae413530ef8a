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

local function glob(pattern, name)
  local p = "^" .. pattern:gsub("[%^%$%(%)%%%.%[%]%+%-%?]", "%%%0")
                          :gsub("%*", ".*") .. "$"
  return name:find(p) ~= nil
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
