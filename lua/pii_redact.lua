-- ngx_llm_router hook: e-mail addresses, card numbers and phone numbers
-- in prompts are replaced by [EMAIL], [CARD] and [PHONE] before the
-- engine sees them.
--
--   location /v1/ {
--       llm_router on;
--       set $llm_pii_mode redact;     # redact (default) | reject
--       llm_hook /etc/nginx/llm/pii_redact.lua;
--       proxy_pass http://$llm_upstream;
--   }
--
-- With "reject" a request that contains any of them gets a 400
-- pii_detected instead.  Looked at: the text of chat messages (string
-- contents and "text" parts), "prompt" and "input" (strings or lists of
-- strings).  Card numbers are 13 to 19 digits, spaces or dashes between
-- them allowed, that pass the Luhn check; phone numbers are 7 to 15 digits
-- with an optional "+", spaces, dots, dashes and parentheses.

local function luhn(digits)
  local sum, alt = 0, false
  for i = #digits, 1, -1 do
    local d = digits:byte(i) - 48
    if alt then
      d = d * 2
      if d > 9 then d = d - 9 end
    end
    sum = sum + d
    alt = not alt
  end
  return sum % 10 == 0
end

-- E-mail addresses are found from their "@": a pattern that starts with
-- [%w...]+ would try every start in a long run of letters with no "@" in
-- it, which is quadratic in the run's length.  Every step here has a
-- bounded window: the local part is at most 64 characters, the domain 255.
local function redact_emails(text)
  local parts, n, pos = {}, 0, 1
  local at = text:find("[%w%.%_%%%+%-]@[%w%-]", 1)

  while at do
    at = at + 1                                     -- the "@"
    local head = text:sub(math.max(pos, at - 64), at - 1)
                     :match("[%w%.%_%%%+%-]+$")
    local domain = head and text:sub(at + 1, at + 255)
                                :match("^[%w%-]+%.[%w%.%-]*%a")
    if domain then
      parts[#parts + 1] = text:sub(pos, at - #head - 1)
      parts[#parts + 1] = "[EMAIL]"
      n = n + 1
      pos = at + #domain + 1
    end
    at = text:find("[%w%.%_%%%+%-]@[%w%-]", math.max(pos, at))
  end

  if n == 0 then
    return text, 0
  end

  parts[#parts + 1] = text:sub(pos)
  return table.concat(parts), n
end

local function redact(text)
  local found = 0
  local function count(n) found = found + n end

  local out, n = redact_emails(text)
  count(n)

  out = out:gsub("%d[%d %-]+%d", function(s)
    local digits = s:gsub("[ %-]", "")
    if #digits >= 13 and #digits <= 19 and luhn(digits) then
      found = found + 1
      return "[CARD]"
    end
  end)

  out = out:gsub("%+?%(?%d[%d%s%.%-%(%)]+%d", function(s)
    local digits = s:gsub("%D", "")
    if #digits >= 7 and #digits <= 15 then
      found = found + 1
      return "[PHONE]"
    end
  end)

  return out, found
end

-- redacts the strings of a value: a string, a list of strings, chat parts
local function walk(value, hits)
  if type(value) == "string" then
    local out, n = redact(value)
    return out, hits + n
  end
  if type(value) == "table" then
    for k, v in pairs(value) do
      if type(v) == "string" and (type(k) == "number" or k == "text") then
        local out, n = redact(v)
        value[k] = out
        hits = hits + n
      elseif type(v) == "table" and (type(k) == "number") then
        local _, h = walk(v, hits)
        hits = h
      end
    end
  end
  return value, hits
end

return {
  request = function(req, ctx)
    local hits = 0

    if type(req.messages) == "table" then
      for _, m in ipairs(req.messages) do
        if type(m) == "table" then
          m.content, hits = walk(m.content, hits)
        end
      end
    end

    if req.prompt ~= nil then req.prompt, hits = walk(req.prompt, hits) end
    if req.input ~= nil then req.input, hits = walk(req.input, hits) end

    if hits > 0 then
      if ctx.var("llm_pii_mode") == "reject" then
        llm.reject(400, "the request contains personal data", "pii_detected")
      end
      llm.log("info", "pii_redact: " .. hits .. " item(s) redacted")
    end
  end,
}
