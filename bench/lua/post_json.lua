-- wrk script: the same POST with a JSON body on every request.
--   wrk ... URL -s bench/lua/post_json.lua -- PATH BODY
function init(args)
  assert(#args == 2, "post_json.lua: -- PATH BODY")
  wrk.method = "POST"
  wrk.path = args[1]
  wrk.body = args[2]
end
