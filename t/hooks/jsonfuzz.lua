-- test hook: llm.json_encode/decode against a plain Lua reference, with
-- every special byte at every offset of strings of many lengths
local function ref_escape(s)
  return '"' .. s:gsub('[%z\1-\31"\\]', function(c)
    if c == '"' then return '\\"' end
    if c == '\\' then return '\\\\' end
    if c == '\n' then return '\\n' end
    if c == '\r' then return '\\r' end
    if c == '\t' then return '\\t' end
    return string.format('\\u%04x', c:byte())
  end) .. '"'
end

return {
  request = function(req, ctx)
    local specials = { '"', '\\', '\n', '\1', '\31', '\t', ' ', '~', '\127',
                       'é', '\u{1F600}' }
    local checked = 0
    for len = 0, 24 do
      for pos = 1, len do
        for _, sp in ipairs(specials) do
          local s = string.rep("a", pos - 1) .. sp .. string.rep("b", len - pos)
          local got = llm.json_encode(s)
          if got ~= ref_escape(s) then
            req.fuzz = "encode " .. len .. "/" .. pos .. ": " .. got .. " want " .. ref_escape(s)
            return
          end
          if llm.json_decode(got) ~= s then
            req.fuzz = "decode " .. len .. "/" .. pos
            return
          end
          checked = checked + 1
        end
      end
    end
    -- escapes the encoder never writes still decode
    local t = llm.json_decode('["\\/\\b\\f\\u0041\\ud83d\\ude00", 1.5e3, -0.25, 9007199254740993, [], {}]')
    if t[1] ~= "/\b\fA\u{1F600}" or t[2] ~= 1500.0 or t[3] ~= -0.25
       or t[4] ~= 9007199254740993 or math.type(t[4]) ~= "integer" then
      req.fuzz = "decode escapes"
      return
    end
    if llm.json_encode(t) ~= '["/\\u0008\\u000cA\u{1F600}",1500.0,-0.25,9007199254740993,[],{}]' then
      req.fuzz = "encode back: " .. llm.json_encode(t)
      return
    end
    local bad = { '{"a":1,}', '[1,]', '"\\x"', '01', '{"a" 1}', '[1 2]',
                  '"abc', 'tru', '1e', '{"a":1} x' }
    for _, b in ipairs(bad) do
      if pcall(llm.json_decode, b) then
        req.fuzz = "accepted " .. b
        return
      end
    end
    req.fuzz = "ok " .. checked
  end,
}
