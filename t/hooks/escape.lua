-- test hook: every way out of the sandbox must fail
local function try(f)
  local ok, err = pcall(f)
  return ok and "ok" or "blocked"
end
return {
  request = function(req, ctx)
    req.results = {
      io = try(function() return io.open("/etc/passwd") end),
      os = try(function() return os.execute("true") end),
      require = try(function() return require("io") end),
      dofile = try(function() return dofile("/etc/passwd") end),
      loadfile = try(function() return loadfile("/etc/passwd") end),
      bytecode = try(function()
        return assert(load("\27Lua\84\0", "x", "b"))() end),
      dump = try(function() return string.dump(function() end) end),
      debug = try(function() return debug.sethook() end),
      strmeta = try(function()
        return getmetatable("").__index.dump(function() end) end),
      ctxmeta = try(function() getmetatable(ctx).__index = nil end),
      docmeta = try(function() getmetatable(req).__index = nil end),
      arraymeta = try(function()
        getmetatable(llm.array()).__name = "object" end),
      package = try(function() return package.loaded end),
      collect = try(function() return collectgarbage("count") end),
      load_text = try(function() return assert(load("return 1"))() end),
      globals = try(function() return rawget(_G, "io").open end),
    }
  end,
}
