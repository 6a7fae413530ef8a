-- test hook: the threads of the state stay out of a hook's reach, the
-- limits follow every coroutine a hook keeps, finalizers are refused, and
-- a document that cannot be decoded whole fails the call, not the worker
local main = coroutine.running()        -- the thread that loaded this file
local kept
local hoard = {}            -- what the state keeps from call to call
local made = 0              -- coroutines the last "many" call made

local function spin()
  while true do end
end

local function doomed()
  local guard <close> = setmetatable({}, { __close = spin })
  return tostring(setmetatable({}, { __tostring = spin }))
end

local function log(what, ...)
  local t = table.pack(...)
  for i = 1, t.n do t[i] = tostring(t[i]) end
  llm.log("warn", what .. ": " .. table.concat(t, " ", 1, t.n))
end

return {
  request = function(req, ctx)
    local what = req.what
    if what == "main" then
      log("close main", pcall(coroutine.close, main))
      log("resume main", coroutine.resume(main))
      log("status main", coroutine.status(main))
      req.what = "survived"
      return req
    elseif what == "keep-loop" then
      kept = coroutine.running()
      while true do end
    elseif what == "nested-loop" then
      kept = coroutine.create(function() while true do end end)
      log("nested", coroutine.resume(kept))
    elseif what == "resume-kept" then
      local ok, err = coroutine.resume(kept)
      req.what = "resumed"
      req.resume = tostring(ok) .. " " .. tostring(err)
      return req
    elseif what == "gc" then
      log("gc", pcall(setmetatable, {},
                      { __gc = function() while true do end end }))
      log("index", pcall(setmetatable, {}, { __index = {} }))
      log("none", pcall(setmetatable, {}, nil))
      log("bad", pcall(setmetatable, {}, 1))
      req.what = "no finalizer"
      return req
    elseif what == "return" then
      req.x = 1
      return req
    elseif what == "deep" then
      -- a member of n tables nested, n from the body
      local t = {}
      for _ = 2, req.n do t = { t } end
      req.deep = t
    elseif what == "pcall-tostring" then
      -- every abort lands in __tostring, where it is an error pcall catches
      local obj = setmetatable({}, { __tostring = spin })
      while true do pcall(tostring, obj) end
    elseif what == "close-dead" then
      -- the abort inside __tostring kills x with its hooks off: closing it
      -- would run the endless __close with no limit
      local x = coroutine.create(doomed)
      log("resume dead", coroutine.resume(x))
      log("close dead", coroutine.close(x))
    elseif what == "wrap-dead" then
      log("wrap dead", pcall(coroutine.wrap(doomed)))
    elseif what == "yield-close" then
      -- stopped where it can yield: closed, and its endless __close stopped
      local guard <close> = setmetatable({}, { __close = spin })
      spin()
    elseif what == "xpcall-loop" then
      -- the abort is an error inside gsub's callback: the handler runs
      -- after it has unwound, under the limits
      xpcall(function() string.gsub("x", "x", spin) end, spin)
    elseif what == "xpcall" then
      local a = table.pack(xpcall(error, function(m)
        return "handled: " .. tostring(m)
      end, "boom", 0))
      local b = table.pack(xpcall(function(x, y) return x + y, "two" end,
                                  spin, 1, 2))
      req.xpcall = { tostring(a[1]), a[2], a.n,
                     tostring(b[1]), b[2], b[3], b.n }
      return req
    elseif what == "metatables" then
      local big = llm.json_decode("123456789012345678901234")
      local obj = llm.json_decode('{"b":1,"a":2}')
      req.metas = {
        number = tostring(getmetatable(big)),
        object = tostring(getmetatable(obj)),
        set = (pcall(setmetatable, obj, nil)),
        forged = llm.json_encode(setmetatable({}, { __name = "object",
                                                    { {} } })),
        order = llm.json_encode(obj),
        big = tostring(big),
      }
      return req
    elseif what == "rep" then
      req.rep = { string.rep("", math.maxinteger), ("").rep("", 2^62, ""),
                  string.rep("ab", 3, ","), (pcall(string.rep, "x", -1)) }
      return req
    elseif what == "wide" then
      -- 2^40 leaves from 41 tables: the encoder stops at the limit
      local t = { 1 }
      for _ = 1, 40 do t = { t, t } end
      local ok, err = pcall(llm.json_encode, t)
      llm.log("warn", "wide encode: " .. tostring(ok) .. " " .. tostring(err))
      req.x = t
      return req
    elseif what == "decode-at-cap" then
      -- the decoder's buffer is freed though the push after it fails
      local pad = string.rep("b", 3 * 1024 * 1024)
      local s = '"' .. string.rep("a", 600000) .. '\\n"'
      for _ = 1, 5 do pcall(llm.json_decode, s) end
      return #pad
    elseif what == "hoard" then
      hoard[#hoard + 1] = string.rep("h", 700000)
      req.hoard = #hoard
      return req
    elseif what == "many" then
      -- short coroutines, each under one count of the hook: charged as made
      made = 0
      while true do
        made = made + 1
        coroutine.wrap(function() for _ = 1, 150 do end end)()
        coroutine.create(function() end)
      end
    elseif what == "made" then
      req.made = made
      return req
    elseif what == "array-doc" then
      log("array doc", pcall(llm.array, req))
      log("array object", pcall(llm.array, llm.json_decode('{"a":1}')))
      req.arr = llm.array()
      req.arr2 = llm.array(llm.array({ 1 }))
      return req
    elseif what == "c-close" then
      -- 20000 pending variables whose __close is table.sort on 20000
      -- numbers: a C function, in which the count sees no instruction
      local t = {}
      for i = 1, 20000 do t[i] = i end
      local mt = { __close = function() end }
      setmetatable(t, mt)
      mt.__close = table.sort
      local function deep(n)
        local guard <close> = t
        if n > 0 then deep(n - 1) end
        spin()
      end
      deep(20000)
    elseif what == "close-chain" then
      -- each coroutine's __close closes the one before: C calls in C calls
      local prev
      for _ = 1, 150 do
        local p = prev
        local co = coroutine.create(function()
          local c <close> = setmetatable({}, { __close = function()
            if p then assert(coroutine.close(p)) end
          end })
          coroutine.yield()
        end)
        coroutine.resume(co)
        prev = co
      end
      local ok, closed, err = pcall(coroutine.close, prev)
      log("chain", ok, closed,
          tostring(err):match("coroutine%.close nested too deep") or err)
      req.what = "chained"
      return req
    elseif what == "name" then
      -- the encoder reads __name raw: the metatable's metatable is not asked
      req.odd = setmetatable({ 1 }, setmetatable({}, { __index = function(_, k)
        llm.log("warn", "name index ran for " .. tostring(k))
      end }))
      return req
    end
  end,
}
