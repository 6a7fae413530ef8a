-- test hook: the table a hook file returns is read raw, so its metatable
-- runs no code out of the hook's call (request() removes response())
local M = {}

M.request = function(req, ctx)
  M.response = nil
end

M.response = function(resp, ctx)
  llm.log("warn", "response ran")
end

return setmetatable(M, { __index = function(_, k)
  llm.log("warn", "module index ran for " .. tostring(k))
end })
