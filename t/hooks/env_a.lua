-- test hook: sets a global and changes a library table in its own environment
return {
  request = function(req, ctx)
    leaked = "from a"
    string.upper = function() return "hijacked" end
    req.a_sees = leaked
  end,
}
