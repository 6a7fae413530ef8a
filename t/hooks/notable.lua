-- test hook: returns no table
return 42
