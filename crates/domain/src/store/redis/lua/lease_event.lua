-- Fragment: a lease's event, emitted by the script that grants or releases the lease, in the
-- same atomic step (after emit.lua). The event's keys follow the lease's (KEYS[4..7] of a
-- claim, KEYS[3..6] of a release: events stream, collaboration members and activity, outbox,
-- all in the task's slot) and its arguments the script's own (emit.lua's ARGV[1..6], then the
-- envelope's text after the value, then the audit record's, '' when the audit record is whole).
-- The Rust side split the envelope (and the audit record) around the one value only the
-- script knows: a grant's expiry (inserted as chrono's RFC 3339 text, `iso_ms`), a release's
-- fence (its digits). An empty envelope (ARGV[a+3]) means no event: the caller emits it.

-- Milliseconds since the epoch as chrono serialises a `DateTime<Utc>` (RFC 3339, `Z`, the
-- fraction only when it is not zero, three digits then): days to a civil date after Howard
-- Hinnant's `civil_from_days`.
local function iso_ms(ms)
  local s = math.floor(ms / 1000)
  local frac = ms - s * 1000
  local days = math.floor(s / 86400)
  local sod = s - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  local out = string.format('%04d-%02d-%02dT%02d:%02d:%02d', y, m, d,
    math.floor(sod / 3600), math.floor(sod / 60) % 60, sod % 60)
  if frac ~= 0 then out = out .. string.format('.%03d', frac) end
  return out .. 'Z'
end

-- Emits the event with `value` (JSON text) in its place, when the call brought one.
local function lease_event(k, a, value)
  if not ARGV[a + 3] or ARGV[a + 3] == '' or type(value) ~= 'string' then return false end
  local audit = ARGV[a + 6]
  if audit ~= '' and ARGV[a + 8] ~= '' then
    audit = audit .. value .. ARGV[a + 8]
  end
  return emit_at(k, a, ARGV[a + 3] .. value .. ARGV[a + 7], audit)
end
