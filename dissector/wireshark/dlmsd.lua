-- dlmsd: DLMS/COSEM (dlms-dissector), a Wireshark Lua plugin of the dlms-dissector project.
--
-- Shows what dlms-dissector found in the packets of its export (`dlms-dissect read -w`, and the
-- "DLMS deciphering tap" extcap): each packet carries a packet comment "dlmsd:{...}", the
-- record as `read --json` prints it (key bytes already withheld) plus its summary line (a long
-- record goes on in "dlmsd+:" comments); the JSON lines that are not records (a finding on its
-- own, the end-of-input findings) are packets of their own, with `dlmsd.event`. This
-- postdissector puts the summary in the Info column and adds a tree: the security header (the
-- security control byte bit by bit, the invocation counter, the system title), the key used
-- and the tag verdict, the decoded APDU (the deciphered APDU under its envelope) and the
-- findings as expert infos with the project's codes and severities.
--
-- Install: `dlms-dissect wireshark --install` (the personal Lua plugin folder), or load it once
-- with `tshark -X lua_script:dlmsd.lua`. Written for Wireshark 4.0 (Lua 5.2) and later.

local dlmsd = Proto("dlmsd", "DLMS/COSEM (dlms-dissector)")

local F = {
    summary = ProtoField.string("dlmsd.summary", "Summary"),
    event = ProtoField.string("dlmsd.event", "Not a record: finding (on its own) or end"),
    apdu = ProtoField.string("dlmsd.apdu", "APDU"),
    inner = ProtoField.string("dlmsd.inner", "Inner (deciphered) APDU"),
    frames = ProtoField.string("dlmsd.frames", "Capture frames"),
    link = ProtoField.string("dlmsd.link", "Link"),
    direction = ProtoField.string("dlmsd.direction", "Direction"),
    transport = ProtoField.string("dlmsd.transport", "Transport"),
    response_time = ProtoField.double("dlmsd.response_time", "Response time (s)"),
    security = ProtoField.string("dlmsd.security", "Security envelope"),
    sc = ProtoField.uint8("dlmsd.sc", "Security control", base.HEX),
    sc_suite = ProtoField.uint8("dlmsd.sc.suite", "Security suite"),
    sc_authenticated = ProtoField.bool("dlmsd.sc.authenticated", "Authenticated"),
    sc_encrypted = ProtoField.bool("dlmsd.sc.encrypted", "Encrypted"),
    sc_broadcast = ProtoField.bool("dlmsd.sc.broadcast", "Broadcast key"),
    sc_compressed = ProtoField.bool("dlmsd.sc.compressed", "Compressed"),
    ic = ProtoField.uint32("dlmsd.ic", "Invocation counter"),
    system_title = ProtoField.string("dlmsd.system_title", "System title (IV)"),
    key_kind = ProtoField.string("dlmsd.key_kind", "Key kind"),
    key_name = ProtoField.string("dlmsd.key_name", "Key name"),
    tag_verified = ProtoField.bool("dlmsd.tag_verified", "Tag verified"),
    signature_verified = ProtoField.bool("dlmsd.signature_verified", "Signature verified"),
    plaintext = ProtoField.string("dlmsd.plaintext", "Deciphered APDU (hex)"),
    field = ProtoField.string("dlmsd.field", "Field"),
    expert_code = ProtoField.string("dlmsd.expert.code", "Finding"),
    expert_severity = ProtoField.string("dlmsd.expert.severity", "Severity"),
    key_withheld = ProtoField.bool("dlmsd.key_withheld", "A key was withheld from the export"),
}
local field_list = {}
for _, f in pairs(F) do field_list[#field_list + 1] = f end
dlmsd.fields = field_list

-- Expert infos: one per (group, severity); the text says the finding's code and message.
local SEVERITIES = { error = expert.severity.ERROR, warning = expert.severity.WARN,
                     note = expert.severity.NOTE, chat = expert.severity.CHAT }
local GROUPS = { malformed = expert.group.MALFORMED, checksum = expert.group.CHECKSUM,
                 security = expert.group.SECURITY, sequence = expert.group.SEQUENCE,
                 protocol = expert.group.PROTOCOL }
local EXPERTS, expert_list = {}, {}
for gname, group in pairs(GROUPS) do
    for sname, severity in pairs(SEVERITIES) do
        local e = ProtoExpert.new("dlmsd.expert." .. gname .. "." .. sname,
                                  "dlms-dissector " .. sname, group, severity)
        EXPERTS[gname .. "." .. sname] = e
        expert_list[#expert_list + 1] = e
    end
end
dlmsd.experts = expert_list

local function expert_group(code)
    local family = code:match("^([^.]+)") or ""
    if family == "malformed" or family == "axdr" then return "malformed" end
    if code:find("fcs") or code:find("hcs") or code:find("crc") then return "checksum" end
    if family == "security" or family == "keys" or family == "output" then return "security" end
    if family == "gbt" or family == "tcp" or family == "framing" then return "sequence" end
    return "protocol"
end

-- A JSON reader (objects keep their key order for the tree).
local ORDER = setmetatable({}, { __mode = "k" })
local NULL = setmetatable({}, { __tostring = function() return "null" end })

local function json_decode(text)
    local pos = 1
    local value

    local function skip()
        pos = text:find("[^ \t\r\n]", pos) or #text + 1
    end

    local function fail(what)
        error("dlmsd: bad JSON at " .. pos .. ": " .. what, 0)
    end

    local ESCAPES = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f",
                      n = "\n", r = "\r", t = "\t" }

    local function utf8(cp)
        if cp < 0x80 then return string.char(cp) end
        if cp < 0x800 then
            return string.char(0xC0 + math.floor(cp / 64), 0x80 + cp % 64)
        end
        if cp < 0x10000 then
            return string.char(0xE0 + math.floor(cp / 4096), 0x80 + math.floor(cp / 64) % 64,
                               0x80 + cp % 64)
        end
        return string.char(0xF0 + math.floor(cp / 262144), 0x80 + math.floor(cp / 4096) % 64,
                           0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
    end

    local function read_string()
        local parts = {}
        pos = pos + 1
        while true do
            local stop = text:find('["\\]', pos)
            if not stop then fail("unterminated string") end
            parts[#parts + 1] = text:sub(pos, stop - 1)
            if text:sub(stop, stop) == '"' then
                pos = stop + 1
                return table.concat(parts)
            end
            local esc = text:sub(stop + 1, stop + 1)
            if esc == "u" then
                local cp = tonumber(text:sub(stop + 2, stop + 5), 16)
                if not cp then fail("bad \\u escape") end
                pos = stop + 6
                if cp >= 0xD800 and cp < 0xDC00 and text:sub(pos, pos + 1) == "\\u" then
                    local low = tonumber(text:sub(pos + 2, pos + 5), 16)
                    if low and low >= 0xDC00 and low < 0xE000 then
                        cp = 0x10000 + (cp - 0xD800) * 1024 + (low - 0xDC00)
                        pos = pos + 6
                    end
                end
                parts[#parts + 1] = utf8(cp)
            else
                if not ESCAPES[esc] then fail("bad escape") end
                parts[#parts + 1] = ESCAPES[esc]
                pos = stop + 2
            end
        end
    end

    function value()
        skip()
        local c = text:sub(pos, pos)
        if c == "{" then
            local obj, keys = {}, {}
            pos = pos + 1
            skip()
            if text:sub(pos, pos) == "}" then
                pos = pos + 1
            else
                while true do
                    skip()
                    if text:sub(pos, pos) ~= '"' then fail("object key expected") end
                    local key = read_string()
                    skip()
                    if text:sub(pos, pos) ~= ":" then fail("':' expected") end
                    pos = pos + 1
                    obj[key] = value()
                    keys[#keys + 1] = key
                    skip()
                    local sep = text:sub(pos, pos)
                    pos = pos + 1
                    if sep == "}" then break end
                    if sep ~= "," then fail("',' or '}' expected") end
                end
            end
            ORDER[obj] = keys
            return obj
        elseif c == "[" then
            local arr = {}
            pos = pos + 1
            skip()
            if text:sub(pos, pos) == "]" then
                pos = pos + 1
                return arr
            end
            while true do
                arr[#arr + 1] = value()
                skip()
                local sep = text:sub(pos, pos)
                pos = pos + 1
                if sep == "]" then return arr end
                if sep ~= "," then fail("',' or ']' expected") end
            end
        elseif c == '"' then
            return read_string()
        elseif text:sub(pos, pos + 3) == "true" then
            pos = pos + 4
            return true
        elseif text:sub(pos, pos + 4) == "false" then
            pos = pos + 5
            return false
        elseif text:sub(pos, pos + 3) == "null" then
            pos = pos + 4
            return NULL
        end
        local num = text:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
        if not num or num == "" then fail("value expected") end
        pos = pos + #num
        return tonumber(num)
    end

    local result = value()
    skip()
    if pos <= #text then fail("trailing text") end
    return result
end

local function present(v)
    return v ~= nil and v ~= NULL
end

local function scalar_text(v)
    if v == NULL then return "null" end
    if type(v) == "number" and v == math.floor(v) and math.abs(v) < 2 ^ 53 then
        return string.format("%d", v)
    end
    return tostring(v)
end

-- {"value": 96, "name": "aarq"}: an enumerated value, shown "aarq (96)".
local function named_value(v)
    local keys = type(v) == "table" and ORDER[v]
    if keys and #keys == 2 and present(v.name) and v.value ~= nil then
        return scalar_text(v.name) .. " (" .. scalar_text(v.value) .. ")"
    end
    return nil
end

local function add_json(tree, key, v)
    local label = named_value(v)
    if label then
        tree:add(F.field, key .. "=" .. label, key .. ": " .. label)
    elseif type(v) == "table" and ORDER[v] then
        local title = present(v.layer) and tostring(v.layer) or key
        if key ~= "" and present(v.layer) and key ~= v.layer then
            title = key .. ": " .. title
        end
        local sub = tree:add(F.field, title, title)
        for _, k in ipairs(ORDER[v]) do
            if k ~= "layer" then add_json(sub, k, v[k]) end
        end
    elseif type(v) == "table" then
        local sub = tree:add(F.field, key, key .. " (" .. #v .. " items)")
        for i, item in ipairs(v) do add_json(sub, "[" .. i .. "]", item) end
    else
        local text = scalar_text(v)
        tree:add(F.field, key .. "=" .. text, key .. ": " .. text)
    end
end

local function bit_line(value, mask, width, name, on)
    local bits = {}
    for i = width - 1, 0, -1 do
        local b = 2 ^ i
        if math.floor(mask / b) % 2 == 1 then
            bits[#bits + 1] = (math.floor(value / b) % 2 == 1) and "1" or "0"
        else
            bits[#bits + 1] = "."
        end
        if i % 4 == 0 and i > 0 then bits[#bits + 1] = " " end
    end
    return table.concat(bits) .. " = " .. name .. ": " .. on
end

local function add_security(tree, sec)
    local sub = tree:add(F.security, scalar_text(sec.envelope or "?"),
                         "Security: " .. scalar_text(sec.envelope or "?"))
    if present(sec.control) then
        local sc = sec.control
        local item = sub:add(F.sc, sc)
        local suite = sc % 16
        item:add(F.sc_suite, suite):set_text(bit_line(sc, 0x0F, 8, "Security suite",
                                                      tostring(suite)))
        local flags = { { F.sc_authenticated, 0x10, "Authenticated" },
                        { F.sc_encrypted, 0x20, "Encrypted" },
                        { F.sc_broadcast, 0x40, "Broadcast key" },
                        { F.sc_compressed, 0x80, "Compressed" } }
        for _, f in ipairs(flags) do
            local on = math.floor(sc / f[2]) % 2 == 1
            item:add(f[1], on):set_text(bit_line(sc, f[2], 8, f[3], on and "Set" or "Not set"))
        end
    end
    if present(sec.invocation_counter) then sub:add(F.ic, sec.invocation_counter) end
    if present(sec.system_title) then sub:add(F.system_title, sec.system_title) end
    if present(sec.key_kind) then sub:add(F.key_kind, sec.key_kind) end
    if present(sec.key_name) then
        sub:add(F.key_name, sec.key_name)
    else
        sub:add(F.field, "key_name=", "Key name: none (no key verified)")
    end
    if present(sec.tag_verified) then
        sub:add(F.tag_verified, sec.tag_verified)
    else
        sub:add(F.field, "tag_verified=", "Tag verified: not checked (no key or no tag)")
    end
    if present(sec.signature_verified) then
        sub:add(F.signature_verified, sec.signature_verified)
    end
end

local function add_findings(tree, list)
    if #list == 0 then return end
    local sub = tree:add(F.field, "expert", "Findings (" .. #list .. ")")
    for _, f in ipairs(list) do
        local code, severity = scalar_text(f.code), scalar_text(f.severity)
        local text = code .. ": " .. scalar_text(f.message)
        local item = sub:add(F.expert_code, code, severity .. ": " .. text)
        item:add(F.expert_severity, severity)
        local e = EXPERTS[expert_group(code) .. "." .. severity]
            or EXPERTS[expert_group(code) .. ".note"]
        item:add_proto_expert_info(e, text)
    end
end

local function field_extractor(name)
    local ok, f = pcall(Field.new, name)
    return ok and f or nil
end

local comment_field = field_extractor("frame.comment") or field_extractor("pkt_comment")
local MARK, MORE = "dlmsd:", "dlmsd+:"

-- The record: the "dlmsd:" comment's JSON, with the "dlmsd+:" comments that continue it (a
-- record longer than one pcapng option holds), in order.
local function record_of()
    if not comment_field then return nil end
    local parts
    for _, fi in ipairs({ comment_field() }) do
        local text = fi.value
        if type(text) == "string" then
            if not parts and text:sub(1, #MARK) == MARK then
                parts = { text:sub(#MARK + 1) }
            elseif parts and text:sub(1, #MORE) == MORE then
                parts[#parts + 1] = text:sub(#MORE + 1)
            end
        end
    end
    if not parts then return nil end
    local ok, rec = pcall(json_decode, table.concat(parts))
    if ok then return rec end
    return nil, rec
end

function dlmsd.dissector(_tvb, pinfo, tree)
    local rec, err = record_of()
    if not rec then
        if err then tree:add(dlmsd, "DLMS/COSEM (dlms-dissector): " .. err) end
        return
    end
    local summary = present(rec.summary) and rec.summary or scalar_text(rec.apdu)
    -- a lower layer may have fenced the columns (4.4's Ethernet for an unknown type does)
    for _, col in ipairs({ pinfo.cols.protocol, pinfo.cols.info }) do
        pcall(col.clear_fence, col)
    end
    pinfo.cols.protocol:set("DLMSD")
    pinfo.cols.info:set(summary)
    local root = tree:add(dlmsd, "DLMS/COSEM (dlms-dissector): " .. summary)
    root:add(F.summary, summary)
    -- a line of `read --json` that is not a record: a finding on its own, or the end
    if rec["end"] == true then
        root:add(F.event, "end")
    elseif present(rec.event) then
        root:add(F.event, scalar_text(rec.event))
    end
    if present(rec.apdu) then root:add(F.apdu, scalar_text(rec.apdu)) end
    if present(rec.inner) then root:add(F.inner, rec.inner) end
    if type(rec.frames) == "table" and #rec.frames > 0 then
        local frames = {}
        for i, n in ipairs(rec.frames) do frames[i] = scalar_text(n) end
        root:add(F.frames, table.concat(frames, ","))
    end
    if present(rec.link) then root:add(F.link, rec.link) end
    if present(rec.direction) then root:add(F.direction, rec.direction) end
    if present(rec.transport) then root:add(F.transport, rec.transport) end
    if present(rec.response_time) then root:add(F.response_time, rec.response_time) end
    if present(rec.security) then add_security(root, rec.security) end
    if present(rec.plaintext) then root:add(F.plaintext, rec.plaintext) end
    local findings = type(rec.expert) == "table" and rec.expert or {}
    for _, f in ipairs(findings) do
        if f.code == "output.key-withheld" then
            root:add(F.key_withheld, true):append_text(" (" .. scalar_text(f.message) .. ")")
        end
    end
    if present(rec.fields) then add_json(root, "APDU", rec.fields) end
    add_findings(root, findings)
end

register_postdissector(dlmsd)
