-- SPDX-License-Identifier: MIT
--
-- Wireshark dissector for the pagewire wire protocol, version 1
-- (docs/wire.md). For Wireshark 4.0 and later (Debian 12's tshark):
--
--   tshark -X lua_script:tools/wireshark/pagewire.lua -r capture.pcap
--   tshark -X lua_script:tools/wireshark/pagewire.lua -d tcp.port==N,pagewire ...
--
-- or copy this file into the personal Lua plugins folder
-- (~/.local/lib/wireshark/plugins/). It registers on TCP port 18515
-- (pagewire-perf's default); any other port takes "Decode As"
-- (-d tcp.port==N,pagewire).
--
-- A TCP stream is a sequence of messages: a 48-byte header, then
-- payload_len bytes (docs/wire.md section 1). Messages that span segments
-- are reassembled. Nothing marks where a message starts, so a header that
-- does not decode ends the dissection of that segment with an expert error:
-- the rest of the stream cannot be split into messages any more.

local pw = Proto("pagewire", "pagewire RDMA over TCP")

local HDR_LEN = 48
local CONN_LEN = 32
local TRAILER_LEN = 8
local MAX_PDATA = 256
local MAX_MSG = 2147483648 -- 2^31, PW_MAX_MSG_SIZE

-- Opcode table (docs/wire.md section 5): name, class, payload bounds.
local ops = {
	[0x01] = { "CONNECT_REQ", "cm", CONN_LEN, CONN_LEN + MAX_PDATA },
	[0x02] = { "CONNECT_REP", "cm", CONN_LEN, CONN_LEN + MAX_PDATA },
	[0x03] = { "CONNECT_REJ", "cm", CONN_LEN, CONN_LEN + MAX_PDATA },
	[0x04] = { "CONNECT_RTU", "cm", 0, 0 },
	[0x10] = { "WRITE", "request", 0, MAX_MSG },
	[0x11] = { "WRITE_IMM", "request", 0, MAX_MSG },
	[0x12] = { "SEND", "request", 0, MAX_MSG },
	[0x13] = { "SEND_IMM", "request", 0, MAX_MSG },
	[0x14] = { "READ_REQ", "request", 0, 0 },
	[0x15] = { "ATOMIC_CS", "request", 0, 0 },
	[0x16] = { "ATOMIC_FA", "request", 0, 0 },
	[0x20] = { "ACK", "response", 0, 0 },
	[0x21] = { "NAK", "response", 0, 0 },
	[0x22] = { "READ_RESP", "response", TRAILER_LEN, MAX_MSG + TRAILER_LEN },
	[0x23] = { "ATOMIC_RESP", "response", 0, 0 },
	[0x30] = { "INVALIDATE", "notify", 0, 0 },
	[0x31] = { "VALIDATE", "notify", 0, 0 },
	[0x32] = { "FAULT_IN", "notify", 0, 0 },
	[0x40] = { "HEARTBEAT", "link", 0, 0 },
	[0x41] = { "DISCONNECT", "link", 0, 0 },
}

local op_names = {}
for v, o in pairs(ops) do op_names[v] = o[1] end

-- Info column names, in the style of Wireshark's InfiniBand dissector.
local op_info = {
	[0x10] = "RDMA WRITE", [0x11] = "RDMA WRITE with Immediate",
	[0x12] = "SEND", [0x13] = "SEND with Immediate",
	[0x14] = "RDMA READ Request", [0x15] = "Compare Swap",
	[0x16] = "Fetch Add", [0x20] = "Acknowledge", [0x21] = "NAK",
	[0x22] = "RDMA READ Response", [0x23] = "Atomic Acknowledge",
}

-- NAK syndromes (section 6).
local syndromes = {
	[0] = "OK", [1] = "RNR", [2] = "PSN_SEQ", [3] = "INVALID_REQ",
	[4] = "REMOTE_ACCESS", [5] = "REMOTE_OP", [6] = "PAGE_FAULT",
}
local hb_kinds = { [0] = "plain", [1] = "PING", [2] = "PONG" }

local f = pw.fields
f.magic = ProtoField.uint16("pagewire.magic", "Magic", base.HEX)
f.version = ProtoField.uint8("pagewire.version", "Version", base.DEC)
f.opcode = ProtoField.uint8("pagewire.opcode", "Opcode", base.HEX, op_names)
f.class = ProtoField.string("pagewire.class", "Class")
f.flags = ProtoField.uint16("pagewire.flags", "Flags", base.HEX)
f.flag_ackreq = ProtoField.bool("pagewire.flags.ack_req", "ACK_REQ", 16, nil, 0x0001)
f.flag_solicited = ProtoField.bool("pagewire.flags.solicited", "SOLICITED", 16, nil, 0x0002)
f.reserved = ProtoField.uint16("pagewire.reserved", "Reserved", base.HEX)
f.psn = ProtoField.uint32("pagewire.psn", "PSN", base.DEC)
f.rkey = ProtoField.uint32("pagewire.rkey", "RKey", base.HEX)
f.raddr = ProtoField.uint64("pagewire.raddr", "Remote address", base.HEX)
f.payload_len = ProtoField.uint32("pagewire.payload_len", "Payload length", base.DEC)
f.imm = ProtoField.uint32("pagewire.imm", "Immediate data", base.HEX)
f.read_len = ProtoField.uint32("pagewire.read_len", "READ length", base.DEC)
f.syndrome = ProtoField.uint32("pagewire.syndrome", "Syndrome", base.DEC, syndromes)
f.hb = ProtoField.uint32("pagewire.hb", "Heartbeat kind", base.DEC, hb_kinds)
f.fault_write = ProtoField.uint32("pagewire.fault_in.write", "Write access", base.DEC)
f.op1 = ProtoField.uint64("pagewire.op1", "op1", base.HEX)
f.compare = ProtoField.uint64("pagewire.compare", "Compare", base.HEX)
f.add = ProtoField.uint64("pagewire.add", "Add", base.HEX)
f.orig = ProtoField.uint64("pagewire.orig", "Original value", base.HEX)
f.retry_us = ProtoField.uint64("pagewire.retry_us", "Retry after (us)", base.DEC)
f.range_len = ProtoField.uint64("pagewire.range_len", "Range length", base.DEC)
f.op2 = ProtoField.uint64("pagewire.op2", "op2", base.HEX)
f.swap = ProtoField.uint64("pagewire.swap", "Swap", base.HEX)
f.generation = ProtoField.uint64("pagewire.generation", "Generation", base.DEC)
f.payload = ProtoField.bytes("pagewire.payload", "Payload")
-- connection payload (section 7)
f.c_min = ProtoField.uint16("pagewire.conn.min_version", "Min version", base.DEC)
f.c_max = ProtoField.uint16("pagewire.conn.max_version", "Max version", base.DEC)
f.c_feat = ProtoField.uint32("pagewire.conn.features", "Features", base.HEX)
f.c_feat_fn = ProtoField.bool("pagewire.conn.features.fault_nak", "FAULT_NAK", 32, nil, 0x1)
f.c_feat_no = ProtoField.bool("pagewire.conn.features.notify", "NOTIFY", 32, nil, 0x2)
f.c_feat_li = ProtoField.bool("pagewire.conn.features.link", "LINK", 32, nil, 0x4)
f.c_qpn = ProtoField.uint32("pagewire.conn.qpn", "QPN", base.HEX)
f.c_rd = ProtoField.uint32("pagewire.conn.max_rd_atomic", "Max RD atomic", base.DEC)
f.c_drd = ProtoField.uint32("pagewire.conn.max_dest_rd_atomic", "Max dest RD atomic", base.DEC)
f.c_reason = ProtoField.uint32("pagewire.conn.reason", "Reason (errno)", base.DEC)
f.c_res1 = ProtoField.uint32("pagewire.conn.reserved1", "Reserved", base.HEX)
f.c_pdlen = ProtoField.uint16("pagewire.conn.pdata_len", "Private data length", base.DEC)
f.c_res2 = ProtoField.uint16("pagewire.conn.reserved2", "Reserved", base.HEX)
f.c_pdata = ProtoField.bytes("pagewire.conn.pdata", "Private data")
-- READ_RESP trailer (section 8)
f.t_syn = ProtoField.uint32("pagewire.trailer.syndrome", "Trailer syndrome", base.DEC, syndromes)
f.t_res = ProtoField.uint32("pagewire.trailer.reserved", "Trailer reserved", base.HEX)
-- request/response matching
f.resp_in = ProtoField.framenum("pagewire.response_in", "Response in", base.NONE, frametype.RESPONSE)
f.req_in = ProtoField.framenum("pagewire.request_in", "Request in", base.NONE, frametype.REQUEST)

local e = pw.experts
e.bad_magic = ProtoExpert.new("pagewire.bad_magic", "Bad magic: not a pagewire header (the stream cannot be resynchronised)", expert.group.MALFORMED, expert.severity.ERROR)
e.bad_version = ProtoExpert.new("pagewire.bad_version", "Unknown header version", expert.group.MALFORMED, expert.severity.ERROR)
e.bad_opcode = ProtoExpert.new("pagewire.bad_opcode", "Unknown opcode", expert.group.MALFORMED, expert.severity.ERROR)
e.bad_reserved = ProtoExpert.new("pagewire.bad_reserved", "Reserved field is not 0", expert.group.PROTOCOL, expert.severity.ERROR)
e.bad_flags = ProtoExpert.new("pagewire.bad_flags", "Unknown flag bits", expert.group.PROTOCOL, expert.severity.ERROR)
e.bad_len = ProtoExpert.new("pagewire.bad_len", "Payload length out of the opcode's bounds", expert.group.MALFORMED, expert.severity.ERROR)
e.bad_syndrome = ProtoExpert.new("pagewire.bad_syndrome", "Invalid NAK syndrome", expert.group.PROTOCOL, expert.severity.ERROR)
e.bad_conn = ProtoExpert.new("pagewire.bad_conn", "Malformed connection payload", expert.group.MALFORMED, expert.severity.ERROR)
e.bad_read_len = ProtoExpert.new("pagewire.bad_read_len", "READ length over 2^31", expert.group.PROTOCOL, expert.severity.ERROR)
e.bad_hb = ProtoExpert.new("pagewire.bad_hb", "HEARTBEAT kind is not 0, 1 or 2", expert.group.MALFORMED, expert.severity.ERROR)
e.nak = ProtoExpert.new("pagewire.nak", "NAK", expert.group.RESPONSE_CODE, expert.severity.WARN)
e.bad_data = ProtoExpert.new("pagewire.read_resp_invalid", "READ_RESP data not valid (trailer syndrome)", expert.group.RESPONSE_CODE, expert.severity.WARN)

-- Matching state, filled on the first pass: frames keyed by
-- "direction|psn". A request travels A->B; its response or ACK B->A.
local req_frames = {}
local resp_frames = {}
-- the frame whose Info column holds a message already (several per frame)
local info_frame = nil

local function dir_key(pinfo, reverse)
	local s = tostring(pinfo.src) .. ":" .. tostring(pinfo.src_port)
	local d = tostring(pinfo.dst) .. ":" .. tostring(pinfo.dst_port)
	if reverse then return d .. ">" .. s end
	return s .. ">" .. d
end

function pw.init()
	req_frames = {}
	resp_frames = {}
end

local function pdu_len(tvb, pinfo, offset)
	-- The header must be valid before its length can be trusted. A bad
	-- one takes the rest of the segment: one expert error, and no attempt
	-- to find messages in bytes that cannot be split any more (a lost
	-- segment in the capture, or not pagewire at all).
	local rest = tvb:len() - offset
	if tvb:range(offset, 1):uint() ~= 0x50 or tvb:range(offset + 1, 1):uint() ~= 0x57 or
	   tvb:range(offset + 2, 1):uint() ~= 1 then
		return rest
	end
	local op = tvb:range(offset + 3, 1):uint()
	local len = tvb:range(offset + 24, 4):le_uint()
	if not ops[op] or len > ops[op][4] then
		return rest
	end
	return HDR_LEN + len
end

local function dissect_conn(tvb, tree, off, len)
	if len < CONN_LEN then
		tree:add_proto_expert_info(e.bad_conn, "connection payload shorter than 32 bytes")
		return
	end
	local c = tree:add(pw, tvb:range(off, len), "Connection payload")
	local minv = tvb:range(off, 2):le_uint()
	local maxv = tvb:range(off + 2, 2):le_uint()
	c:add_le(f.c_min, tvb:range(off, 2))
	c:add_le(f.c_max, tvb:range(off + 2, 2))
	local ft = c:add_le(f.c_feat, tvb:range(off + 4, 4))
	ft:add_le(f.c_feat_fn, tvb:range(off + 4, 4))
	ft:add_le(f.c_feat_no, tvb:range(off + 4, 4))
	ft:add_le(f.c_feat_li, tvb:range(off + 4, 4))
	c:add_le(f.c_qpn, tvb:range(off + 8, 4))
	c:add_le(f.c_rd, tvb:range(off + 12, 4))
	c:add_le(f.c_drd, tvb:range(off + 16, 4))
	c:add_le(f.c_reason, tvb:range(off + 20, 4))
	local r1 = c:add_le(f.c_res1, tvb:range(off + 24, 4))
	local pdl = tvb:range(off + 28, 2):le_uint()
	c:add_le(f.c_pdlen, tvb:range(off + 28, 2))
	local r2 = c:add_le(f.c_res2, tvb:range(off + 30, 2))
	if tvb:range(off + 24, 4):le_uint() ~= 0 then r1:add_proto_expert_info(e.bad_reserved) end
	if tvb:range(off + 30, 2):le_uint() ~= 0 then r2:add_proto_expert_info(e.bad_reserved) end
	if minv == 0 or minv > maxv then
		c:add_proto_expert_info(e.bad_conn, "min_version 0 or above max_version")
	end
	if pdl > MAX_PDATA or len ~= CONN_LEN + pdl then
		c:add_proto_expert_info(e.bad_conn, "pdata_len does not match the payload length")
	elseif pdl > 0 then
		c:add(f.c_pdata, tvb:range(off + CONN_LEN, pdl))
	end
end

-- One message at offset 0 of tvb (reassembled by dissect_tcp_pdus).
local function dissect_msg(tvb, pinfo, root)
	local t = root:add(pw, tvb:range(0, math.min(tvb:len(), HDR_LEN)), "pagewire")
	if tvb:len() < HDR_LEN then
		t:add_proto_expert_info(e.bad_len, "truncated header")
		return tvb:len()
	end
	local m = t:add(f.magic, tvb:range(0, 2))
	if tvb:range(0, 1):uint() ~= 0x50 or tvb:range(1, 1):uint() ~= 0x57 then
		m:add_proto_expert_info(e.bad_magic)
		pinfo.cols.info:append(" [not pagewire]")
		return tvb:len()
	end
	local v = t:add(f.version, tvb:range(2, 1))
	if tvb:range(2, 1):uint() ~= 1 then
		v:add_proto_expert_info(e.bad_version)
		return tvb:len()
	end
	local op = tvb:range(3, 1):uint()
	local o = ops[op]
	local oi = t:add(f.opcode, tvb:range(3, 1))
	if not o then
		oi:add_proto_expert_info(e.bad_opcode)
		pinfo.cols.info:append(" [unknown opcode]")
		return tvb:len()
	end
	t:add(f.class, tvb:range(3, 1), o[2])
	local flags = tvb:range(4, 2):le_uint()
	local fl = t:add_le(f.flags, tvb:range(4, 2))
	fl:add_le(f.flag_ackreq, tvb:range(4, 2))
	fl:add_le(f.flag_solicited, tvb:range(4, 2))
	if bit32.band(flags, 0xfffc) ~= 0 then fl:add_proto_expert_info(e.bad_flags) end
	local rs = t:add_le(f.reserved, tvb:range(6, 2))
	if tvb:range(6, 2):le_uint() ~= 0 then rs:add_proto_expert_info(e.bad_reserved) end
	local psn = tvb:range(8, 4):le_uint()
	local rkey = tvb:range(12, 4):le_uint()
	local raddr = tvb:range(16, 8):le_uint64()
	local plen = tvb:range(24, 4):le_uint()
	local imm = tvb:range(28, 4):le_uint()
	t:add_le(f.psn, tvb:range(8, 4))
	t:add_le(f.rkey, tvb:range(12, 4))
	t:add_le(f.raddr, tvb:range(16, 8))
	local pl = t:add_le(f.payload_len, tvb:range(24, 4))
	if plen < o[3] or plen > o[4] then pl:add_proto_expert_info(e.bad_len) end

	-- imm, op1 and op2 by opcode (the table of section 5)
	local r_imm, r_op1, r_op2 = tvb:range(28, 4), tvb:range(32, 8), tvb:range(40, 8)
	local name = o[1]
	if op == 0x11 or op == 0x13 then
		t:add_le(f.imm, r_imm)
	elseif op == 0x14 then
		local rl = t:add_le(f.read_len, r_imm)
		if imm > MAX_MSG then rl:add_proto_expert_info(e.bad_read_len) end
	elseif op == 0x21 then
		local sy = t:add_le(f.syndrome, r_imm)
		if imm == 0 or imm > 6 then sy:add_proto_expert_info(e.bad_syndrome) end
		t:add_proto_expert_info(e.nak, "NAK " .. (syndromes[imm] or tostring(imm)))
		t:add_le(f.retry_us, r_op1)
	elseif op == 0x15 then
		t:add_le(f.compare, r_op1)
		t:add_le(f.swap, r_op2)
	elseif op == 0x16 then
		t:add_le(f.add, r_op1)
	elseif op == 0x23 then
		t:add_le(f.orig, r_op1)
	elseif op == 0x30 then
		t:add_le(f.range_len, r_op1)
		t:add_le(f.generation, r_op2)
	elseif op == 0x31 then
		local sy = t:add_le(f.syndrome, r_imm)
		if imm ~= 0 and imm ~= 4 then sy:add_proto_expert_info(e.bad_syndrome) end
		t:add_le(f.range_len, r_op1)
		t:add_le(f.generation, r_op2)
	elseif op == 0x32 then
		t:add_le(f.fault_write, r_imm)
		t:add_le(f.range_len, r_op1)
	elseif op == 0x40 then
		local hb = t:add_le(f.hb, r_imm)
		if imm > 2 then hb:add_proto_expert_info(e.bad_hb) end
	else
		t:add_le(f.imm, r_imm)
		t:add_le(f.op1, r_op1)
		t:add_le(f.op2, r_op2)
	end

	local avail = tvb:len() - HDR_LEN
	if plen > 0 and avail > 0 then
		local n = math.min(plen, avail)
		if o[2] == "cm" then
			dissect_conn(tvb, t, HDR_LEN, n)
		elseif op == 0x22 and n >= TRAILER_LEN and n == plen then
			if plen > TRAILER_LEN then
				t:add(f.payload, tvb:range(HDR_LEN, plen - TRAILER_LEN))
			end
			local toff = HDR_LEN + plen - TRAILER_LEN
			local ts = t:add_le(f.t_syn, tvb:range(toff, 4))
			local tr = t:add_le(f.t_res, tvb:range(toff + 4, 4))
			local syn = tvb:range(toff, 4):le_uint()
			if syn > 6 then ts:add_proto_expert_info(e.bad_syndrome)
			elseif syn ~= 0 then ts:add_proto_expert_info(e.bad_data) end
			if tvb:range(toff + 4, 4):le_uint() ~= 0 then tr:add_proto_expert_info(e.bad_reserved) end
		else
			t:add(f.payload, tvb:range(HDR_LEN, n))
		end
	end

	-- request/response matching by PSN, per direction
	if o[2] == "request" then
		local k = dir_key(pinfo, false) .. "|" .. psn
		if not pinfo.visited then req_frames[k] = pinfo.number end
		if resp_frames[k] then t:add(f.resp_in, resp_frames[k]) end
	elseif o[2] == "response" then
		local k = dir_key(pinfo, true) .. "|" .. psn
		if not pinfo.visited and not resp_frames[k] then resp_frames[k] = pinfo.number end
		if req_frames[k] then t:add(f.req_in, req_frames[k]) end
	end

	-- Info column
	local info = op_info[op] or name
	local s = info
	if o[2] == "request" or o[2] == "response" then s = s .. " psn=" .. psn end
	if op == 0x10 or op == 0x11 or op == 0x14 or op == 0x15 or op == 0x16 or
	   op == 0x30 or op == 0x31 or op == 0x32 then
		s = s .. string.format(" rkey=0x%08x va=0x%s", rkey, raddr:tohex())
	end
	if op == 0x14 then
		s = s .. " len=" .. imm
	elseif plen > 0 and o[2] ~= "cm" then
		s = s .. " len=" .. plen
	end
	if op == 0x11 or op == 0x13 then s = s .. string.format(" imm=0x%08x", imm) end
	if op == 0x21 then s = s .. " " .. (syndromes[imm] or ("syndrome " .. imm)) end
	if op == 0x40 then s = s .. " " .. (hb_kinds[imm] or "?") end
	if bit32.band(flags, 1) ~= 0 then s = s .. " AckReq" end
	t:append_text(", " .. s)
	if info_frame == pinfo.number then
		pinfo.cols.info:append(" | " .. s)
	else
		pinfo.cols.info:set(s)
		info_frame = pinfo.number
	end
	return tvb:len()
end

function pw.dissector(tvb, pinfo, tree)
	pinfo.cols.protocol:set("pagewire")
	info_frame = nil
	dissect_tcp_pdus(tvb, tree, HDR_LEN, pdu_len, dissect_msg, true)
	return tvb:len()
end

DissectorTable.get("tcp.port"):add(18515, pw)
