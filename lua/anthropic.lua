-- ngx_llm_router hook: Anthropic's Messages API in front of
-- OpenAI-compatible engines.  Clients POST /v1/messages in Anthropic's
-- shape; the engine gets a chat completion request; the answer goes back
-- as an Anthropic message, and a stream as Anthropic's events
-- (message_start, content_block_start, content_block_delta,
-- content_block_stop, message_delta, message_stop).
--
--   location = /v1/messages {
--       llm_router on;
--       llm_hook /etc/nginx/llm/anthropic.lua;
--       proxy_pass http://$llm_upstream/v1/chat/completions;
--       proxy_http_version 1.1;
--       proxy_set_header Connection "";
--       proxy_buffering off;
--   }
--
-- The "model" is routed like any other.  Translated: system (string or
-- text blocks), messages with string or block contents (text, base64 and
-- URL images, tool_use, tool_result), max_tokens, temperature, top_p,
-- top_k is dropped, stop_sequences, stream, tools and tool_choice,
-- metadata.user_id.  Streams carry text; tool calls in a stream are not
-- translated.  Engine errors keep OpenAI's error shape.

local STOP = {
  stop = "end_turn", length = "max_tokens", tool_calls = "tool_use",
  function_call = "tool_use", content_filter = "refusal",
}

local function text_of(blocks)
  if type(blocks) == "string" then return blocks end
  local parts = {}
  for _, b in ipairs(blocks or {}) do
    if type(b) == "table" and b.type == "text" then
      parts[#parts + 1] = b.text
    end
  end
  return table.concat(parts, "\n")
end

-- one Anthropic message -> one or more OpenAI messages
local function convert_message(m, out)
  if type(m.content) == "string" then
    out[#out + 1] = { role = m.role, content = m.content }
    return
  end

  local parts, calls = {}, {}

  for _, b in ipairs(m.content or {}) do
    if b.type == "text" then
      parts[#parts + 1] = { type = "text", text = b.text }
    elseif b.type == "image" and type(b.source) == "table" then
      local url = b.source.url
      if b.source.type == "base64" then
        url = "data:" .. (b.source.media_type or "image/png") .. ";base64,"
              .. b.source.data
      end
      parts[#parts + 1] = { type = "image_url", image_url = { url = url } }
    elseif b.type == "tool_use" then
      calls[#calls + 1] = {
        id = b.id, type = "function",
        ["function"] = { name = b.name,
                         arguments = llm.json_encode(b.input or {}) },
      }
    elseif b.type == "tool_result" then
      out[#out + 1] = { role = "tool", tool_call_id = b.tool_use_id,
                        content = text_of(b.content) }
    end
  end

  if #parts > 0 or #calls > 0 then
    local msg = { role = m.role }
    if #parts == 1 and parts[1].type == "text" then
      msg.content = parts[1].text
    elseif #parts > 0 then
      msg.content = parts
    else
      msg.content = llm.null
    end
    if #calls > 0 then msg.tool_calls = calls end
    out[#out + 1] = msg
  end
end

local function request(req, ctx)
  local chat = {
    model = req.model,
    messages = {},
    max_tokens = req.max_tokens,
    temperature = req.temperature,
    top_p = req.top_p,
    stream = req.stream,
  }

  if req.system ~= nil then
    chat.messages[1] = { role = "system", content = text_of(req.system) }
  end

  for _, m in ipairs(req.messages or {}) do
    convert_message(m, chat.messages)
  end

  if type(req.stop_sequences) == "table" then
    chat.stop = req.stop_sequences
  end

  if type(req.metadata) == "table" and req.metadata.user_id then
    chat.user = req.metadata.user_id
  end

  if type(req.tools) == "table" then
    chat.tools = {}
    for i, t in ipairs(req.tools) do
      chat.tools[i] = { type = "function", ["function"] = {
        name = t.name, description = t.description,
        parameters = t.input_schema } }
    end
  end

  if type(req.tool_choice) == "table" then
    local c = req.tool_choice
    if c.type == "any" then
      chat.tool_choice = "required"
    elseif c.type == "tool" then
      chat.tool_choice = { type = "function", ["function"] = { name = c.name } }
    elseif c.type == "none" then
      chat.tool_choice = "none"
    else
      chat.tool_choice = "auto"
    end
  end

  if req.stream then
    chat.stream_options = { include_usage = true }
  end

  return chat
end

local function response(resp, ctx)
  local choice = (resp.choices or {})[1] or {}
  local msg = choice.message or {}
  local content = {}

  if type(msg.content) == "string" and msg.content ~= "" then
    content[#content + 1] = { type = "text", text = msg.content }
  end

  for _, call in ipairs(type(msg.tool_calls) == "table" and msg.tool_calls
                        or {}) do
    local ok, input = pcall(llm.json_decode, call["function"].arguments)
    content[#content + 1] = {
      type = "tool_use", id = call.id, name = call["function"].name,
      input = ok and input or {},
    }
  end

  local usage = resp.usage or {}

  return {
    id = "msg_" .. tostring(resp.id or ""),
    type = "message",
    role = "assistant",
    model = ctx.model,
    content = llm.array(content),
    stop_reason = STOP[choice.finish_reason] or "end_turn",
    stop_sequence = llm.null,
    usage = { input_tokens = usage.prompt_tokens or 0,
              output_tokens = usage.completion_tokens or 0 },
  }
end

local function event(name, data)
  return "event: " .. name .. "\ndata: " .. llm.json_encode(data) .. "\n\n"
end

local function chunk(ev, ctx)
  local st = ctx.state
  local out = {}

  if not st.started then
    st.started = true
    st.output_tokens = 0
    out[#out + 1] = event("message_start", { type = "message_start",
      message = { id = "msg_" .. tostring(ev.id or ""), type = "message",
                  role = "assistant", model = ctx.model,
                  content = llm.array(), stop_reason = llm.null,
                  stop_sequence = llm.null,
                  usage = { input_tokens = 0, output_tokens = 0 } } })
    out[#out + 1] = event("content_block_start", {
      type = "content_block_start", index = 0,
      content_block = { type = "text", text = "" } })
  end

  if type(ev.usage) == "table" then
    st.input_tokens = ev.usage.prompt_tokens
    st.output_tokens = ev.usage.completion_tokens or st.output_tokens
  end

  local choice = type(ev.choices) == "table" and ev.choices[1] or nil

  if type(choice) == "table" then
    local delta = choice.delta or {}
    if type(delta.content) == "string" and delta.content ~= "" then
      out[#out + 1] = event("content_block_delta", {
        type = "content_block_delta", index = 0,
        delta = { type = "text_delta", text = delta.content } })
    end
    if type(choice.finish_reason) == "string" then
      st.stop_reason = STOP[choice.finish_reason] or "end_turn"
    end
  end

  if #out == 0 then
    return false
  end

  return table.concat(out)
end

local function done(ev, ctx)
  local st = ctx.state
  return event("content_block_stop", { type = "content_block_stop",
                                       index = 0 })
      .. event("message_delta", { type = "message_delta",
           delta = { stop_reason = st.stop_reason or "end_turn",
                     stop_sequence = llm.null },
           usage = { output_tokens = st.output_tokens or 0 } })
      .. event("message_stop", { type = "message_stop" })
end

return {
  request = request,
  response = response,
  chunk = chunk,
  done = done,
}
