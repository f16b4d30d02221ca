/* SPDX-License-Identifier: MIT */
/*
 * pagewire wire protocol, version 1.
 *
 * Every message is a fixed 48-byte header followed by payload_len bytes of
 * payload. All multi-byte fields are little-endian. The byte-by-byte layout
 * is documented in docs/wire.md; this header is the single source of truth
 * for the code. Decoders are pure functions of (buf, len): they validate
 * lengths before reading and never trust a field they have not checked.
 *
 * Header layout (offsets in bytes):
 *    0  u8   magic0      'P' (0x50)
 *    1  u8   magic1      'W' (0x57)
 *    2  u8   version     PW_WIRE_VERSION
 *    3  u8   opcode      enum pw_wire_opcode
 *    4  u16  flags       PW_WF_*
 *    6  u16  reserved    must be 0
 *    8  u32  psn         request sequence number (responses: the request's)
 *   12  u32  rkey        remote key (requests that name memory)
 *   16  u64  raddr       remote virtual address
 *   24  u32  payload_len bytes that follow the header
 *   28  u32  imm         immediate data | READ length | NAK syndrome
 *   32  u64  op1         atomic compare/add | atomic original | NAK retry-after us
 *   40  u64  op2         atomic swap
 */
#ifndef PW_WIRE_WIRE_H
#define PW_WIRE_WIRE_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#define PW_WIRE_MAGIC0		0x50	/* 'P' */
#define PW_WIRE_MAGIC1		0x57	/* 'W' */
#define PW_WIRE_VERSION		1
#define PW_WIRE_HDR_LEN		48
#define PW_WIRE_MAX_PAYLOAD	(1u << 31)	/* PW_MAX_MSG_SIZE */
#define PW_WIRE_READ_TRAILER_LEN 8
#define PW_WIRE_CONN_FIXED_LEN	32
#define PW_WIRE_MAX_PDATA	256

/*
 * Opcode table. Requests (0x10..0x1f) flow requester -> responder and carry
 * a PSN; responses (0x20..0x2f) flow back; connection management (0x01..)
 * only appears before the QP is connected; notifications (0x30..0x3f) and
 * link messages (0x40..0x4f) go either way, outside the PSN sequence.
 */
enum pw_wire_opcode {
	PW_OP_CONNECT_REQ	= 0x01,
	PW_OP_CONNECT_REP	= 0x02,
	PW_OP_CONNECT_REJ	= 0x03,
	/*
	 * Client -> server after a CONNECT_REP, when both set
	 * PW_WIRE_FEAT_LINK: the client took the connection (IBA CM's RTU),
	 * so a server never goes live on a connection its client gave up.
	 */
	PW_OP_CONNECT_RTU	= 0x04,

	PW_OP_WRITE		= 0x10,
	PW_OP_WRITE_IMM		= 0x11,
	PW_OP_SEND		= 0x12,
	PW_OP_SEND_IMM		= 0x13,
	PW_OP_READ_REQ		= 0x14,
	PW_OP_ATOMIC_CS		= 0x15,
	PW_OP_ATOMIC_FA		= 0x16,

	PW_OP_ACK		= 0x20,
	PW_OP_NAK		= 0x21,
	PW_OP_READ_RESP		= 0x22,
	PW_OP_ATOMIC_RESP	= 0x23,

	/*
	 * Notifications (docs/wire.md section 14, the 2008 proposal):
	 * outside the PSN sequence, no payload, only between peers that both
	 * set PW_WIRE_FEAT_NOTIFY. rkey/raddr/op1 name a range of one MR.
	 */
	PW_OP_INVALIDATE	= 0x30,	/* target -> peers: range gone (op2 = generation) */
	PW_OP_VALIDATE		= 0x31,	/* target -> peers: range back (op2 = generation) */
	PW_OP_FAULT_IN		= 0x32,	/* requester -> target: please fault it in */

	/*
	 * Link messages: outside the PSN sequence, no payload, only between
	 * peers that both set PW_WIRE_FEAT_LINK (docs/wire.md section 15).
	 */
	PW_OP_HEARTBEAT		= 0x40,	/* my engine is alive (imm: PW_WIRE_HB_*) */
	PW_OP_DISCONNECT	= 0x41,	/* my application ends the connection */

	PW_OP_MAX		= 0x42,
};

enum pw_wire_flags {
	PW_WF_ACK_REQ	= 1 << 0,	/* responder should ACK promptly (IBA AckReq) */
	PW_WF_SOLICITED	= 1 << 1,	/* solicited event (IBA SE bit) */
	PW_WF_ALL	= PW_WF_ACK_REQ | PW_WF_SOLICITED,
};

/* NAK syndromes, carried in the imm field of a NAK. */
enum pw_wire_syndrome {
	PW_SYN_OK		= 0,
	PW_SYN_RNR		= 1,	/* no receive posted; retry after op1 us */
	PW_SYN_PSN_SEQ		= 2,	/* out-of-sequence request */
	PW_SYN_INVALID_REQ	= 3,	/* malformed or unsupported request */
	PW_SYN_REMOTE_ACCESS	= 4,	/* key, PD, access right or bounds */
	PW_SYN_REMOTE_OP	= 5,	/* responder could not complete the op */
	/*
	 * DROP policy (PW_FAULT_DROP): the target pages were not in the
	 * responder's page table; the request and everything after it were
	 * dropped, the fault is being resolved. Resend from this PSN after op1
	 * us. Sent only to a peer that set PW_WIRE_FEAT_FAULT_NAK.
	 */
	PW_SYN_PAGE_FAULT	= 6,
	PW_SYN_MAX		= 7,
};

/* Connection feature bits (struct pw_wire_conn.features). */
enum pw_wire_feature {
	/* understands NAK PAGE_FAULT: its responder may use DROP on us */
	PW_WIRE_FEAT_FAULT_NAK	= 1u << 0,
	/* understands INVALIDATE / VALIDATE / FAULT_IN */
	PW_WIRE_FEAT_NOTIFY	= 1u << 1,
	/*
	 * link management: the client sends CONNECT_RTU, both send
	 * HEARTBEAT (engine-level liveness) and DISCONNECT
	 */
	PW_WIRE_FEAT_LINK	= 1u << 2,
};

/* Message classes of the opcode table. */
enum pw_wire_class {
	PW_WC_CLASS_NONE = 0,
	PW_WC_CLASS_CM,
	PW_WC_CLASS_REQUEST,
	PW_WC_CLASS_RESPONSE,
	PW_WC_CLASS_NOTIFY,
	PW_WC_CLASS_LINK,
};

/* FAULT_IN imm: the requester will write there (populate for write). */
#define PW_WIRE_FAULT_IN_WRITE	1u

/*
 * HEARTBEAT imm: 0 = unasked (the sender is working on the peer's
 * requests: stalled in a fault, or in the middle of a message); PING =
 * answer me (psn: the sender's sequence); PONG = the answer (psn: the
 * PING's).
 */
#define PW_WIRE_HB_PING		1u
#define PW_WIRE_HB_PONG		2u

/**
 * struct pw_wire_opinfo - one row of the opcode table
 * @name:        for logs and docs
 * @cls:         enum pw_wire_class; NONE marks an unknown opcode
 * @min_payload: smallest payload_len allowed
 * @max_payload: largest payload_len allowed
 * @needs_recv:  consumes a posted receive at the responder
 */
struct pw_wire_opinfo {
	const char *name;
	uint8_t cls;
	uint8_t needs_recv;
	uint32_t min_payload;
	uint32_t max_payload;
};

extern const struct pw_wire_opinfo pw_wire_ops[PW_OP_MAX];

/* Decoded header, host byte order. */
struct pw_hdr {
	uint8_t version;
	uint8_t opcode;
	uint16_t flags;
	uint32_t psn;
	uint32_t rkey;
	uint64_t raddr;
	uint32_t payload_len;
	union {
		uint32_t imm;		/* WRITE_IMM, SEND_IMM */
		uint32_t read_len;	/* READ_REQ */
		uint32_t syndrome;	/* NAK, VALIDATE (0 or REMOTE_ACCESS) */
		uint32_t nflags;	/* FAULT_IN: PW_WIRE_FAULT_IN_* */
		uint32_t hb;		/* HEARTBEAT: 0 or one PW_WIRE_HB_* */
	};
	union {
		uint64_t compare_add;	/* ATOMIC_CS (compare), ATOMIC_FA (add) */
		uint64_t orig;		/* ATOMIC_RESP */
		uint64_t retry_us;	/* NAK (RNR) */
		uint64_t range_len;	/* INVALIDATE, VALIDATE, FAULT_IN */
	};
	union {
		uint64_t swap;		/* ATOMIC_CS */
		uint64_t gen;		/* INVALIDATE, VALIDATE */
	};
};

/*
 * Connection payload (CONNECT_REQ / CONNECT_REP / CONNECT_REJ):
 *    0  u16 min_version   lowest protocol version the sender speaks
 *    2  u16 max_version   highest
 *    4  u32 features      feature bits, 0 in v1
 *    8  u32 qpn           sender's QP number
 *   12  u32 max_rd_atomic      READ/ATOMIC the sender will issue at once
 *   16  u32 max_dest_rd_atomic READ/ATOMIC the sender accepts at once
 *   20  u32 reason        CONNECT_REJ reason (errno), else 0
 *   24  u32 reserved      0
 *   28  u16 pdata_len     private data bytes, <= 256
 *   30  u16 reserved      0
 *   32  ... private data
 * CM messages always use header version 1, so any later version can still
 * negotiate through them.
 */
struct pw_wire_conn {
	uint16_t min_version;
	uint16_t max_version;
	uint32_t features;
	uint32_t qpn;
	uint32_t max_rd_atomic;
	uint32_t max_dest_rd_atomic;
	uint32_t reason;
	uint16_t pdata_len;
	uint8_t pdata[PW_WIRE_MAX_PDATA];
};

static_assert(PW_WIRE_HDR_LEN == 48, "header is 48 bytes on the wire");
static_assert(PW_WIRE_CONN_FIXED_LEN + PW_WIRE_MAX_PDATA <= 512,
	      "connection payload bounded");

void pw_wire_encode_hdr(const struct pw_hdr *h, uint8_t out[PW_WIRE_HDR_LEN]);

/**
 * pw_wire_decode_hdr() - decode and validate one header
 *
 * Return: 0; -ENODATA if @len < PW_WIRE_HDR_LEN; -EPROTO for a bad magic or
 * version; -EBADMSG for an unknown opcode, unknown flag bits, a non-zero
 * reserved field or an unknown NAK syndrome, and for a notification with
 * an empty or wrapping range, unknown FAULT_IN flags or a VALIDATE
 * syndrome other than OK / REMOTE_ACCESS, and for a HEARTBEAT whose imm
 * is not 0, PING or PONG; -EMSGSIZE when payload_len is
 * outside the opcode's bounds (or a READ length is over the maximum).
 */
int pw_wire_decode_hdr(const void *buf, size_t len, struct pw_hdr *h);

/* Return: bytes written (32 + pdata_len), or -EINVAL. */
int pw_wire_encode_conn(const struct pw_wire_conn *c, uint8_t *out,
			size_t out_len);

/**
 * pw_wire_decode_conn() - decode a connection payload of exactly @len bytes
 *
 * Return: 0, -ENODATA when shorter than the fixed part, -EMSGSIZE when
 * pdata_len disagrees with @len or exceeds 256, -EBADMSG for non-zero
 * reserved fields, min_version == 0 or min_version > max_version.
 */
int pw_wire_decode_conn(const void *buf, size_t len, struct pw_wire_conn *c);

/* READ_RESP trailer: u32 syndrome (PW_SYN_OK or the error), u32 reserved. */
void pw_wire_encode_trailer(uint32_t syndrome,
			    uint8_t out[PW_WIRE_READ_TRAILER_LEN]);
/* Return: 0 with *syndrome set, -ENODATA if short, -EBADMSG if invalid. */
int pw_wire_decode_trailer(const void *buf, size_t len, uint32_t *syndrome);

const char *pw_wire_op_name(uint8_t opcode);

/* Serial-number arithmetic on 32-bit PSNs (RFC 1982 style). */
static inline int pw_psn_cmp(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b);
}

#endif /* PW_WIRE_WIRE_H */
