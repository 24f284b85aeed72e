--[[ Shared by the semantic-cache scripts (inserted where a script says `-- #include clock`):
  clockNow() reads Redis's clock (TIME) and returns it in ms, as a number and as its decimal text. The text
  is put together from TIME's own digits, not formatted from the number: Lua turns a number into text with
  sprintf (~5,000 instructions each, string.format's '%.0f' as much), which was a tenth of a store call's
  instructions across its few formatted numbers. ]]
local function clockNow()
  local t = redis.call('TIME')
  local s, us = t[1], t[2]
  -- ms within the second: TIME's microseconds (no leading zeros) without their last three digits, padded
  local ms = #us > 3 and string.sub(us, 1, #us - 3) or ''
  local text = s .. string.rep('0', 3 - #ms) .. ms
  return tonumber(s) * 1000 + (tonumber(ms) or 0), text
end
