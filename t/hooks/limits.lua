-- test hook: runaway scripts
return {
  request = function(req, ctx)
    local what = req.messages[1].content
    if what == "loop" then
      while true do end
    elseif what == "pcall-loop" then
      while true do pcall(function() while true do end end) end
    elseif what == "memory" then
      local t = {}
      while true do t[#t + 1] = string.rep("x", 1024) .. #t end
    elseif what == "pcall-memory" then
      while true do
        pcall(function()
          local t = {}
          while true do t[#t + 1] = string.rep("y", 4096) .. #t end
        end)
      end
    elseif what == "sleep" then
      local s = 0
      for i = 1, 1e12 do s = s + i end
    end
  end,
}
