-- test hook: on answers and stream events
return {
  response = function(resp, ctx)
    if ctx.headers["x-reject"] then
      llm.reject(502, "the answer broke policy", "answer_rejected")
    end
    if ctx.headers["x-fail"] then
      error("response boom")
    end
    resp.hooked = ctx.model
    resp.choices[1].message.content =
      string.upper(resp.choices[1].message.content)
  end,
  chunk = function(ev, ctx)
    if ctx.headers["x-fail"] and ev.choices[1]
       and ev.choices[1].delta.content == "tok1 " then
      error("chunk boom")
    end
    local c = ev.choices[1]
    if c and c.delta and c.delta.content == "tok1 " then
      return false
    end
    if c and c.delta and c.delta.content then
      c.delta.content = string.upper(c.delta.content)
    end
  end,
}
