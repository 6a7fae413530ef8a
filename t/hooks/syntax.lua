-- test hook: a syntax error on line 3
return {
  request = function(req, ctx) if then end,
}
