/* SPDX-License-Identifier: MIT */
/*
 * Wire protocol v1: pure encode/decode functions and the opcode table.
 * Nothing here touches a socket or global state, so every function is safe
 * to feed arbitrary bytes (tests/fuzz/fuzz_wire.c does exactly that).
 */
#include <errno.h>
#include <string.h>

#include "wire/wire.h"

#define MAXP PW_WIRE_MAX_PAYLOAD
#define CONN_MIN PW_WIRE_CONN_FIXED_LEN
#define CONN_MAX (PW_WIRE_CONN_FIXED_LEN + PW_WIRE_MAX_PDATA)

const struct pw_wire_opinfo pw_wire_ops[PW_OP_MAX] = {
	[PW_OP_CONNECT_REQ] = { "CONNECT_REQ", PW_WC_CLASS_CM, 0, CONN_MIN, CONN_MAX },
	[PW_OP_CONNECT_REP] = { "CONNECT_REP", PW_WC_CLASS_CM, 0, CONN_MIN, CONN_MAX },
	[PW_OP_CONNECT_REJ] = { "CONNECT_REJ", PW_WC_CLASS_CM, 0, CONN_MIN, CONN_MAX },
	[PW_OP_CONNECT_RTU] = { "CONNECT_RTU", PW_WC_CLASS_CM, 0, 0, 0 },
	[PW_OP_WRITE]       = { "WRITE",       PW_WC_CLASS_REQUEST, 0, 0, MAXP },
	[PW_OP_WRITE_IMM]   = { "WRITE_IMM",   PW_WC_CLASS_REQUEST, 1, 0, MAXP },
	[PW_OP_SEND]        = { "SEND",        PW_WC_CLASS_REQUEST, 1, 0, MAXP },
	[PW_OP_SEND_IMM]    = { "SEND_IMM",    PW_WC_CLASS_REQUEST, 1, 0, MAXP },
	[PW_OP_READ_REQ]    = { "READ_REQ",    PW_WC_CLASS_REQUEST, 0, 0, 0 },
	[PW_OP_ATOMIC_CS]   = { "ATOMIC_CS",   PW_WC_CLASS_REQUEST, 0, 0, 0 },
	[PW_OP_ATOMIC_FA]   = { "ATOMIC_FA",   PW_WC_CLASS_REQUEST, 0, 0, 0 },
	[PW_OP_ACK]         = { "ACK",         PW_WC_CLASS_RESPONSE, 0, 0, 0 },
	[PW_OP_NAK]         = { "NAK",         PW_WC_CLASS_RESPONSE, 0, 0, 0 },
	[PW_OP_READ_RESP]   = { "READ_RESP",   PW_WC_CLASS_RESPONSE, 0,
				PW_WIRE_READ_TRAILER_LEN,
				MAXP + PW_WIRE_READ_TRAILER_LEN },
	[PW_OP_ATOMIC_RESP] = { "ATOMIC_RESP", PW_WC_CLASS_RESPONSE, 0, 0, 0 },
	[PW_OP_INVALIDATE]  = { "INVALIDATE",  PW_WC_CLASS_NOTIFY, 0, 0, 0 },
	[PW_OP_VALIDATE]    = { "VALIDATE",    PW_WC_CLASS_NOTIFY, 0, 0, 0 },
	[PW_OP_FAULT_IN]    = { "FAULT_IN",    PW_WC_CLASS_NOTIFY, 0, 0, 0 },
	[PW_OP_HEARTBEAT]   = { "HEARTBEAT",   PW_WC_CLASS_LINK, 0, 0, 0 },
	[PW_OP_DISCONNECT]  = { "DISCONNECT",  PW_WC_CLASS_LINK, 0, 0, 0 },
};

static inline void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)v);
	put16(p + 2, (uint16_t)(v >> 16));
}

static inline void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static inline uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t get32(const uint8_t *p)
{
	return (uint32_t)get16(p) | ((uint32_t)get16(p + 2) << 16);
}

static inline uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | ((uint64_t)get32(p + 4) << 32);
}

const char *pw_wire_op_name(uint8_t opcode)
{
	if (opcode < PW_OP_MAX && pw_wire_ops[opcode].name)
		return pw_wire_ops[opcode].name;
	return "UNKNOWN";
}

void pw_wire_encode_hdr(const struct pw_hdr *h, uint8_t out[PW_WIRE_HDR_LEN])
{
	out[0] = PW_WIRE_MAGIC0;
	out[1] = PW_WIRE_MAGIC1;
	out[2] = PW_WIRE_VERSION;
	out[3] = h->opcode;
	put16(out + 4, h->flags);
	put16(out + 6, 0);
	put32(out + 8, h->psn);
	put32(out + 12, h->rkey);
	put64(out + 16, h->raddr);
	put32(out + 24, h->payload_len);
	put32(out + 28, h->imm);
	put64(out + 32, h->compare_add);
	put64(out + 40, h->swap);
}

int pw_wire_decode_hdr(const void *buf, size_t len, struct pw_hdr *h)
{
	const uint8_t *p = buf;
	const struct pw_wire_opinfo *oi;

	if (len < PW_WIRE_HDR_LEN)
		return -ENODATA;
	if (p[0] != PW_WIRE_MAGIC0 || p[1] != PW_WIRE_MAGIC1 ||
	    p[2] != PW_WIRE_VERSION)
		return -EPROTO;

	h->version = p[2];
	h->opcode = p[3];
	h->flags = get16(p + 4);
	h->psn = get32(p + 8);
	h->rkey = get32(p + 12);
	h->raddr = get64(p + 16);
	h->payload_len = get32(p + 24);
	h->imm = get32(p + 28);
	h->compare_add = get64(p + 32);
	h->swap = get64(p + 40);

	if (h->opcode >= PW_OP_MAX)
		return -EBADMSG;
	oi = &pw_wire_ops[h->opcode];
	if (oi->cls == PW_WC_CLASS_NONE)
		return -EBADMSG;
	if ((h->flags & ~PW_WF_ALL) || get16(p + 6) != 0)
		return -EBADMSG;
	if (h->payload_len < oi->min_payload ||
	    h->payload_len > oi->max_payload)
		return -EMSGSIZE;
	if (h->opcode == PW_OP_READ_REQ && h->read_len > PW_WIRE_MAX_PAYLOAD)
		return -EMSGSIZE;
	if (h->opcode == PW_OP_NAK &&
	    (h->syndrome == PW_SYN_OK || h->syndrome >= PW_SYN_MAX))
		return -EBADMSG;
	if (oi->cls == PW_WC_CLASS_NOTIFY) {
		/* a range of one MR: never empty, never past the address space */
		if (h->range_len == 0 || h->range_len > UINT64_MAX - h->raddr)
			return -EBADMSG;
		if (h->opcode == PW_OP_FAULT_IN &&
		    (h->nflags & ~PW_WIRE_FAULT_IN_WRITE))
			return -EBADMSG;
		if (h->opcode != PW_OP_FAULT_IN && h->opcode != PW_OP_VALIDATE &&
		    h->imm != 0)
			return -EBADMSG;
		if (h->opcode == PW_OP_VALIDATE && h->syndrome != PW_SYN_OK &&
		    h->syndrome != PW_SYN_REMOTE_ACCESS)
			return -EBADMSG;
	}
	/* a HEARTBEAT is unasked, a PING or a PONG, never two of them */
	if (h->opcode == PW_OP_HEARTBEAT && h->hb > PW_WIRE_HB_PONG)
		return -EBADMSG;
	return 0;
}

int pw_wire_encode_conn(const struct pw_wire_conn *c, uint8_t *out,
			size_t out_len)
{
	size_t n = PW_WIRE_CONN_FIXED_LEN + (size_t)c->pdata_len;

	if (c->pdata_len > PW_WIRE_MAX_PDATA || out_len < n)
		return -EINVAL;
	put16(out + 0, c->min_version);
	put16(out + 2, c->max_version);
	put32(out + 4, c->features);
	put32(out + 8, c->qpn);
	put32(out + 12, c->max_rd_atomic);
	put32(out + 16, c->max_dest_rd_atomic);
	put32(out + 20, c->reason);
	put32(out + 24, 0);
	put16(out + 28, c->pdata_len);
	put16(out + 30, 0);
	memcpy(out + PW_WIRE_CONN_FIXED_LEN, c->pdata, c->pdata_len);
	return (int)n;
}

int pw_wire_decode_conn(const void *buf, size_t len, struct pw_wire_conn *c)
{
	const uint8_t *p = buf;

	if (len < PW_WIRE_CONN_FIXED_LEN)
		return -ENODATA;
	c->min_version = get16(p + 0);
	c->max_version = get16(p + 2);
	c->features = get32(p + 4);
	c->qpn = get32(p + 8);
	c->max_rd_atomic = get32(p + 12);
	c->max_dest_rd_atomic = get32(p + 16);
	c->reason = get32(p + 20);
	c->pdata_len = get16(p + 28);
	if (get32(p + 24) != 0 || get16(p + 30) != 0)
		return -EBADMSG;
	if (c->min_version > c->max_version || c->min_version == 0)
		return -EBADMSG;
	if (c->pdata_len > PW_WIRE_MAX_PDATA ||
	    len != PW_WIRE_CONN_FIXED_LEN + (size_t)c->pdata_len)
		return -EMSGSIZE;
	memcpy(c->pdata, p + PW_WIRE_CONN_FIXED_LEN, c->pdata_len);
	return 0;
}

void pw_wire_encode_trailer(uint32_t syndrome,
			    uint8_t out[PW_WIRE_READ_TRAILER_LEN])
{
	put32(out, syndrome);
	put32(out + 4, 0);
}

int pw_wire_decode_trailer(const void *buf, size_t len, uint32_t *syndrome)
{
	const uint8_t *p = buf;

	if (len < PW_WIRE_READ_TRAILER_LEN)
		return -ENODATA;
	*syndrome = get32(p);
	if (*syndrome >= PW_SYN_MAX || get32(p + 4) != 0)
		return -EBADMSG;
	return 0;
}
