/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the wire protocol v1 codec (src/wire/wire.c).
 *
 * One executable, one sub-test per argv[1], so CTest reports each aspect of
 * the codec separately. Every decoder call asserts the exact return code,
 * because the engine maps those codes to different QP behaviour.
 *
 * The layout/optable tests read docs/wire.md (argv[2]) and check its tables
 * and hex example against the codec byte by byte: the document is the
 * contract with other implementations, so it must not drift from the code.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire/wire.h"

static int failures;

#define CHECK(cond)							\
	do {								\
		if (!(cond)) {						\
			fprintf(stderr, "%s:%d: CHECK failed: %s\n",	\
				__FILE__, __LINE__, #cond);		\
			failures++;					\
		}							\
	} while (0)

#define CHECK_RC(expr, want)						\
	do {								\
		int rc_ = (expr);					\
		int want_ = (want);					\
		if (rc_ != want_) {					\
			fprintf(stderr, "%s:%d: %s = %s, want %s\n",	\
				__FILE__, __LINE__, #expr, rcname(rc_),	\
				rcname(want_));				\
			failures++;					\
		}							\
	} while (0)

/* Stop a sub-test early once it is clearly broken, to keep logs readable. */
#define BAIL_IF_FAILED()						\
	do {								\
		if (failures > 50) {					\
			fprintf(stderr, "too many failures, stopping\n"); \
			return;						\
		}							\
	} while (0)

static const char *rcname(int rc)
{
	static char buf[32];

	switch (rc) {
	case 0: return "0";
	case -ENODATA: return "-ENODATA";
	case -EPROTO: return "-EPROTO";
	case -EBADMSG: return "-EBADMSG";
	case -EMSGSIZE: return "-EMSGSIZE";
	case -EINVAL: return "-EINVAL";
	}
	snprintf(buf, sizeof(buf), "%d", rc);
	return buf;
}

/* splitmix64: deterministic, so a failure reproduces on every run. */
static uint64_t rng_state = 0x70616765776972ULL;

static uint64_t rnd(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint32_t rnd_range(uint32_t lo, uint32_t hi)
{
	uint64_t span = (uint64_t)hi - lo + 1;

	return lo + (uint32_t)(rnd() % span);
}

/*
 * A copy of exactly @n bytes on the heap: under ASan (make asan) any read
 * past @n is reported, which is the "never reads past len" guarantee.
 */
static uint8_t *dup_exact(const void *p, size_t n)
{
	uint8_t *q = malloc(n ? n : 1);

	if (!q) {
		perror("malloc");
		exit(2);
	}
	if (n)
		memcpy(q, p, n);
	return q;
}

static int decode_hdr_exact(const uint8_t *buf, size_t len, struct pw_hdr *h)
{
	uint8_t *q = dup_exact(buf, len);
	int rc = pw_wire_decode_hdr(q, len, h);

	free(q);
	return rc;
}

static int decode_conn_exact(const uint8_t *buf, size_t len,
			     struct pw_wire_conn *c)
{
	uint8_t *q = dup_exact(buf, len);
	int rc = pw_wire_decode_conn(q, len, c);

	free(q);
	return rc;
}

static int decode_trailer_exact(const uint8_t *buf, size_t len, uint32_t *s)
{
	uint8_t *q = dup_exact(buf, len);
	int rc = pw_wire_decode_trailer(q, len, s);

	free(q);
	return rc;
}

static void put_le(uint8_t *p, uint64_t v, unsigned size)
{
	for (unsigned i = 0; i < size; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* ------------------------------------------------------------------ */
/* The expected protocol, written down independently of wire.c.        */
/* ------------------------------------------------------------------ */

struct op_expect {
	uint8_t op;
	const char *name;
	uint8_t cls;
	uint8_t needs_recv;
	uint32_t min, max;
};

#define MAXP 2147483648u	/* 2^31, PW_MAX_MSG_SIZE */

static const struct op_expect known_ops[] = {
	{ 0x01, "CONNECT_REQ", PW_WC_CLASS_CM, 0, 32, 288 },
	{ 0x02, "CONNECT_REP", PW_WC_CLASS_CM, 0, 32, 288 },
	{ 0x03, "CONNECT_REJ", PW_WC_CLASS_CM, 0, 32, 288 },
	{ 0x04, "CONNECT_RTU", PW_WC_CLASS_CM, 0, 0, 0 },
	{ 0x10, "WRITE", PW_WC_CLASS_REQUEST, 0, 0, MAXP },
	{ 0x11, "WRITE_IMM", PW_WC_CLASS_REQUEST, 1, 0, MAXP },
	{ 0x12, "SEND", PW_WC_CLASS_REQUEST, 1, 0, MAXP },
	{ 0x13, "SEND_IMM", PW_WC_CLASS_REQUEST, 1, 0, MAXP },
	{ 0x14, "READ_REQ", PW_WC_CLASS_REQUEST, 0, 0, 0 },
	{ 0x15, "ATOMIC_CS", PW_WC_CLASS_REQUEST, 0, 0, 0 },
	{ 0x16, "ATOMIC_FA", PW_WC_CLASS_REQUEST, 0, 0, 0 },
	{ 0x20, "ACK", PW_WC_CLASS_RESPONSE, 0, 0, 0 },
	{ 0x21, "NAK", PW_WC_CLASS_RESPONSE, 0, 0, 0 },
	{ 0x22, "READ_RESP", PW_WC_CLASS_RESPONSE, 0, 8, MAXP + 8 },
	{ 0x23, "ATOMIC_RESP", PW_WC_CLASS_RESPONSE, 0, 0, 0 },
	{ 0x30, "INVALIDATE", PW_WC_CLASS_NOTIFY, 0, 0, 0 },
	{ 0x31, "VALIDATE", PW_WC_CLASS_NOTIFY, 0, 0, 0 },
	{ 0x32, "FAULT_IN", PW_WC_CLASS_NOTIFY, 0, 0, 0 },
	{ 0x40, "HEARTBEAT", PW_WC_CLASS_LINK, 0, 0, 0 },
	{ 0x41, "DISCONNECT", PW_WC_CLASS_LINK, 0, 0, 0 },
};
#define N_OPS (sizeof(known_ops) / sizeof(known_ops[0]))

static const struct op_expect *find_op(unsigned op)
{
	for (size_t i = 0; i < N_OPS; i++)
		if (known_ops[i].op == op)
			return &known_ops[i];
	return NULL;
}

/* A header that must decode: payload at its minimum, NAK with a syndrome. */
static struct pw_hdr valid_hdr(uint8_t op)
{
	struct pw_hdr h;
	const struct op_expect *e = find_op(op);

	memset(&h, 0, sizeof(h));
	h.version = PW_WIRE_VERSION;
	h.opcode = op;
	h.payload_len = e ? e->min : 0;
	if (op == PW_OP_NAK)
		h.syndrome = PW_SYN_RNR;
	if (e && e->cls == PW_WC_CLASS_NOTIFY)
		h.range_len = 4096;	/* a notification names a range */
	return h;
}

static void encode(const struct pw_hdr *h, uint8_t out[PW_WIRE_HDR_LEN])
{
	memset(out, 0xEE, PW_WIRE_HDR_LEN);
	pw_wire_encode_hdr(h, out);
}

static int hdr_equal(const struct pw_hdr *a, const struct pw_hdr *b)
{
	return a->version == b->version && a->opcode == b->opcode &&
	       a->flags == b->flags && a->psn == b->psn &&
	       a->rkey == b->rkey && a->raddr == b->raddr &&
	       a->payload_len == b->payload_len && a->imm == b->imm &&
	       a->compare_add == b->compare_add && a->swap == b->swap;
}

/* ------------------------------------------------------------------ */
/* roundtrip                                                           */
/* ------------------------------------------------------------------ */

static void random_valid_hdr(const struct op_expect *e, struct pw_hdr *h)
{
	memset(h, 0, sizeof(*h));
	h->version = PW_WIRE_VERSION;
	h->opcode = e->op;
	h->flags = (uint16_t)(rnd() & PW_WF_ALL);
	h->psn = (uint32_t)rnd();
	h->rkey = (uint32_t)rnd();
	h->raddr = rnd();
	/* Bias towards the bounds, where off-by-one bugs live. */
	switch (rnd() % 4) {
	case 0: h->payload_len = e->min; break;
	case 1: h->payload_len = e->max; break;
	default: h->payload_len = rnd_range(e->min, e->max); break;
	}
	h->imm = (uint32_t)rnd();
	if (e->op == PW_OP_READ_REQ)
		h->read_len = (rnd() & 1) ? MAXP : rnd_range(0, MAXP);
	if (e->op == PW_OP_NAK)
		h->syndrome = rnd_range(PW_SYN_RNR, PW_SYN_MAX - 1);
	h->compare_add = rnd();
	h->swap = rnd();
	if (e->op == PW_OP_HEARTBEAT)
		h->hb = (uint32_t)(rnd() % 3);	/* unasked, PING or PONG */
	if (e->cls == PW_WC_CLASS_NOTIFY) {
		/* a non-empty range that does not wrap; imm per opcode */
		h->range_len = rnd_range(1, 1u << 31);
		if (h->raddr > UINT64_MAX - h->range_len)
			h->raddr = UINT64_MAX - h->range_len;
		h->imm = e->op == PW_OP_FAULT_IN ? (uint32_t)(rnd() & PW_WIRE_FAULT_IN_WRITE) :
			 e->op == PW_OP_VALIDATE && (rnd() & 1) ? PW_SYN_REMOTE_ACCESS : 0;
	}
}

static void test_roundtrip(void)
{
	for (size_t i = 0; i < N_OPS; i++) {
		for (int iter = 0; iter < 2000; iter++) {
			struct pw_hdr h, d;
			uint8_t b1[PW_WIRE_HDR_LEN], b2[PW_WIRE_HDR_LEN];
			uint8_t longer[PW_WIRE_HDR_LEN + 16];

			random_valid_hdr(&known_ops[i], &h);
			encode(&h, b1);
			memset(&d, 0x5A, sizeof(d));
			CHECK_RC(decode_hdr_exact(b1, sizeof(b1), &d), 0);
			CHECK(hdr_equal(&h, &d));
			/* decode -> encode gives back the very same bytes */
			encode(&d, b2);
			CHECK(memcmp(b1, b2, sizeof(b1)) == 0);

			/* Bytes after the header (the payload) are not its business. */
			memcpy(longer, b1, sizeof(b1));
			memset(longer + sizeof(b1), 0xFF, 16);
			CHECK_RC(decode_hdr_exact(longer, sizeof(longer), &d), 0);
			CHECK(hdr_equal(&h, &d));
			BAIL_IF_FAILED();
		}
	}

	/* The encoder stamps magic and version itself: h->version is ignored. */
	{
		struct pw_hdr h = valid_hdr(PW_OP_ACK), d;
		uint8_t b[PW_WIRE_HDR_LEN];

		h.version = 7;
		encode(&h, b);
		CHECK(b[0] == 0x50 && b[1] == 0x57 && b[2] == 1);
		CHECK_RC(decode_hdr_exact(b, sizeof(b), &d), 0);
		CHECK(d.version == 1);
	}

	/* Every syndrome a NAK may carry round-trips. */
	for (uint32_t s = PW_SYN_RNR; s < PW_SYN_MAX; s++) {
		struct pw_hdr h = valid_hdr(PW_OP_NAK), d;
		uint8_t b[PW_WIRE_HDR_LEN];

		h.syndrome = s;
		h.retry_us = 200;
		encode(&h, b);
		CHECK_RC(decode_hdr_exact(b, sizeof(b), &d), 0);
		CHECK(d.syndrome == s && d.retry_us == 200);
	}
}

/* ------------------------------------------------------------------ */
/* reject_truncated                                                    */
/* ------------------------------------------------------------------ */

static void test_reject_truncated(void)
{
	struct pw_hdr h;
	struct pw_wire_conn c;
	uint32_t syn;

	/* A NULL buffer of length 0 must be refused without a dereference. */
	CHECK_RC(pw_wire_decode_hdr(NULL, 0, &h), -ENODATA);
	CHECK_RC(pw_wire_decode_conn(NULL, 0, &c), -ENODATA);
	CHECK_RC(pw_wire_decode_trailer(NULL, 0, &syn), -ENODATA);

	for (size_t i = 0; i < N_OPS; i++) {
		struct pw_hdr v = valid_hdr(known_ops[i].op);
		uint8_t b[PW_WIRE_HDR_LEN];

		encode(&v, b);
		/* Length is checked before anything else, even a valid prefix. */
		for (size_t len = 0; len < PW_WIRE_HDR_LEN; len++)
			CHECK_RC(decode_hdr_exact(b, len, &h), -ENODATA);
		CHECK_RC(decode_hdr_exact(b, PW_WIRE_HDR_LEN, &h), 0);
	}
	/* ... and before the magic: garbage that is too short is -ENODATA. */
	{
		uint8_t junk[PW_WIRE_HDR_LEN];

		memset(junk, 0xFF, sizeof(junk));
		for (size_t len = 0; len < PW_WIRE_HDR_LEN; len++)
			CHECK_RC(decode_hdr_exact(junk, len, &h), -ENODATA);
	}

	/* Connection payload: fixed part is 32 bytes. */
	{
		struct pw_wire_conn in;
		uint8_t b[PW_WIRE_CONN_FIXED_LEN + PW_WIRE_MAX_PDATA];

		memset(&in, 0, sizeof(in));
		in.min_version = in.max_version = 1;
		CHECK_RC(pw_wire_encode_conn(&in, b, sizeof(b)), 32);
		for (size_t len = 0; len < PW_WIRE_CONN_FIXED_LEN; len++)
			CHECK_RC(decode_conn_exact(b, len, &c), -ENODATA);
		CHECK_RC(decode_conn_exact(b, 32, &c), 0);

		/* Private data announced but cut short: a size mismatch. */
		in.pdata_len = 10;
		memset(in.pdata, 'x', 10);
		CHECK_RC(pw_wire_encode_conn(&in, b, sizeof(b)), 42);
		for (size_t len = PW_WIRE_CONN_FIXED_LEN; len < 42; len++)
			CHECK_RC(decode_conn_exact(b, len, &c), -EMSGSIZE);
		CHECK_RC(decode_conn_exact(b, 42, &c), 0);
	}

	/* READ_RESP trailer: 8 bytes. */
	{
		uint8_t t[PW_WIRE_READ_TRAILER_LEN];

		pw_wire_encode_trailer(PW_SYN_OK, t);
		for (size_t len = 0; len < PW_WIRE_READ_TRAILER_LEN; len++)
			CHECK_RC(decode_trailer_exact(t, len, &syn), -ENODATA);
		CHECK_RC(decode_trailer_exact(t, 8, &syn), 0);
	}
}

/* ------------------------------------------------------------------ */
/* reject_bad_magic                                                    */
/* ------------------------------------------------------------------ */

static void test_reject_bad_magic(void)
{
	for (size_t i = 0; i < N_OPS; i++) {
		struct pw_hdr v = valid_hdr(known_ops[i].op), h;
		uint8_t good[PW_WIRE_HDR_LEN], b[PW_WIRE_HDR_LEN];

		encode(&v, good);
		for (unsigned pos = 0; pos < 3; pos++) {
			for (unsigned val = 0; val < 256; val++) {
				memcpy(b, good, sizeof(b));
				b[pos] = (uint8_t)val;
				CHECK_RC(decode_hdr_exact(b, sizeof(b), &h),
					 val == good[pos] ? 0 : -EPROTO);
			}
		}
		BAIL_IF_FAILED();
	}

	/* Bad magic wins over every later error: nothing else is trusted. */
	{
		uint8_t b[PW_WIRE_HDR_LEN];
		struct pw_hdr h;

		memset(b, 0xFF, sizeof(b));
		CHECK_RC(decode_hdr_exact(b, sizeof(b), &h), -EPROTO);
		b[0] = 'P';
		b[1] = 'W';
		CHECK_RC(decode_hdr_exact(b, sizeof(b), &h), -EPROTO);
		b[2] = 2;	/* a future version is not v1 */
		CHECK_RC(decode_hdr_exact(b, sizeof(b), &h), -EPROTO);
		b[2] = 0;
		CHECK_RC(decode_hdr_exact(b, sizeof(b), &h), -EPROTO);
		b[2] = 1;	/* now the unknown opcode 0xFF is reached */
		CHECK_RC(decode_hdr_exact(b, sizeof(b), &h), -EBADMSG);
		/* Byte-swapped magic ("WP") is not accepted either. */
		b[0] = 'W';
		b[1] = 'P';
		CHECK_RC(decode_hdr_exact(b, sizeof(b), &h), -EPROTO);
	}
}

/* ------------------------------------------------------------------ */
/* reject_unknown_opcode (+ the opcode table and names)                */
/* ------------------------------------------------------------------ */

static void test_reject_unknown_opcode(void)
{
	for (unsigned op = 0; op < 256; op++) {
		const struct op_expect *e = find_op(op);
		struct pw_hdr v = valid_hdr((uint8_t)op), h;
		uint8_t b[PW_WIRE_HDR_LEN];

		encode(&v, b);
		CHECK(b[3] == op);
		CHECK_RC(decode_hdr_exact(b, sizeof(b), &h), e ? 0 : -EBADMSG);
		if (e) {
			CHECK(strcmp(pw_wire_op_name((uint8_t)op), e->name) == 0);
		} else {
			CHECK(strcmp(pw_wire_op_name((uint8_t)op), "UNKNOWN") == 0);
			/* An unknown opcode is EBADMSG whatever its payload_len. */
			v.payload_len = 0xFFFFFFFFu;
			encode(&v, b);
			CHECK_RC(decode_hdr_exact(b, sizeof(b), &h), -EBADMSG);
		}
		if (op < PW_OP_MAX) {
			const struct pw_wire_opinfo *oi = &pw_wire_ops[op];

			if (e) {
				CHECK(oi->cls == e->cls);
				CHECK(oi->needs_recv == e->needs_recv);
				CHECK(oi->min_payload == e->min);
				CHECK(oi->max_payload == e->max);
				CHECK(oi->name && strcmp(oi->name, e->name) == 0);
			} else {
				CHECK(oi->cls == PW_WC_CLASS_NONE);
			}
		}
	}
	/* Opcode class follows the value ranges wire.h promises. */
	for (size_t i = 0; i < N_OPS; i++) {
		uint8_t op = known_ops[i].op;
		uint8_t cls = pw_wire_ops[op].cls;

		if (op < 0x10)
			CHECK(cls == PW_WC_CLASS_CM);
		else if (op < 0x20)
			CHECK(cls == PW_WC_CLASS_REQUEST);
		else if (op < 0x30)
			CHECK(cls == PW_WC_CLASS_RESPONSE);
		else if (op < 0x40)
			CHECK(cls == PW_WC_CLASS_NOTIFY);
		else
			CHECK(cls == PW_WC_CLASS_LINK);
	}
}

/* ------------------------------------------------------------------ */
/* reject_notify: INVALIDATE / VALIDATE / FAULT_IN field rules          */
/* ------------------------------------------------------------------ */

static void test_reject_notify(void)
{
	static const uint8_t ops[] = { PW_OP_INVALIDATE, PW_OP_VALIDATE,
				       PW_OP_FAULT_IN };

	for (size_t i = 0; i < sizeof(ops); i++) {
		struct pw_hdr v = valid_hdr(ops[i]), h;
		uint8_t b[PW_WIRE_HDR_LEN];

		/* the valid one, then one field broken at a time */
		encode(&v, b);
		CHECK_RC(decode_hdr_exact(b, sizeof(b), &h), 0);
		CHECK(h.range_len == 4096);

		v = valid_hdr(ops[i]);
		v.range_len = 0;		/* empty range */
		encode(&v, b);
		CHECK_RC(decode_hdr_exact(b, sizeof(b), &h), -EBADMSG);

		v = valid_hdr(ops[i]);
		v.raddr = UINT64_MAX - 100;	/* wraps */
		encode(&v, b);
		CHECK_RC(decode_hdr_exact(b, sizeof(b), &h), -EBADMSG);
		v.raddr = UINT64_MAX - 4096;	/* ends exactly at the top */
		encode(&v, b);
		CHECK_RC(decode_hdr_exact(b, sizeof(b), &h), 0);

		v = valid_hdr(ops[i]);
		v.payload_len = 1;		/* no payload, ever */
		encode(&v, b);
		CHECK_RC(decode_hdr_exact(b, sizeof(b), &h), -EMSGSIZE);

		v = valid_hdr(ops[i]);
		v.imm = 2;			/* not a flag, not a VALIDATE syndrome */
		encode(&v, b);
		CHECK_RC(decode_hdr_exact(b, sizeof(b), &h), -EBADMSG);
	}
	{
		struct pw_hdr v = valid_hdr(PW_OP_FAULT_IN), h;
		uint8_t b[PW_WIRE_HDR_LEN];

		v.nflags = PW_WIRE_FAULT_IN_WRITE;
		encode(&v, b);
		CHECK_RC(decode_hdr_exact(b, sizeof(b), &h), 0);
		CHECK(h.nflags == PW_WIRE_FAULT_IN_WRITE);
	}
	{
		struct pw_hdr v = valid_hdr(PW_OP_VALIDATE), h;
		uint8_t b[PW_WIRE_HDR_LEN];

		v.syndrome = PW_SYN_REMOTE_ACCESS;	/* a FAULT_IN that failed */
		v.gen = 77;
		encode(&v, b);
		CHECK_RC(decode_hdr_exact(b, sizeof(b), &h), 0);
		CHECK(h.syndrome == PW_SYN_REMOTE_ACCESS && h.gen == 77);
		v.syndrome = PW_SYN_RNR;
		encode(&v, b);
		CHECK_RC(decode_hdr_exact(b, sizeof(b), &h), -EBADMSG);
	}
	{
		struct pw_hdr v = valid_hdr(PW_OP_INVALIDATE), h;
		uint8_t b[PW_WIRE_HDR_LEN];

		v.imm = 1;			/* INVALIDATE has no imm */
		encode(&v, b);
		CHECK_RC(decode_hdr_exact(b, sizeof(b), &h), -EBADMSG);
	}
}

/* ------------------------------------------------------------------ */
/* reject_link: CONNECT_RTU, HEARTBEAT, DISCONNECT                      */
/* ------------------------------------------------------------------ */

static void test_reject_link(void)
{
	static const uint8_t ops[] = { PW_OP_CONNECT_RTU, PW_OP_HEARTBEAT,
				       PW_OP_DISCONNECT };

	for (size_t i = 0; i < sizeof(ops); i++) {
		struct pw_hdr v = valid_hdr(ops[i]), h;
		uint8_t b[PW_WIRE_HDR_LEN];

		encode(&v, b);
		CHECK_RC(decode_hdr_exact(b, sizeof(b), &h), 0);
		v.payload_len = 1;		/* no payload, ever */
		encode(&v, b);
		CHECK_RC(decode_hdr_exact(b, sizeof(b), &h), -EMSGSIZE);
		v.payload_len = 32;		/* RTU is not a connection payload */
		encode(&v, b);
		CHECK_RC(decode_hdr_exact(b, sizeof(b), &h), -EMSGSIZE);
	}
	/* HEARTBEAT: unasked, PING and PONG, with any sequence; nothing else */
	for (uint32_t k = 0; k < 64; k++) {
		struct pw_hdr v = valid_hdr(PW_OP_HEARTBEAT), h;
		uint8_t b[PW_WIRE_HDR_LEN];

		v.hb = k;
		v.psn = 0xdeadbeef + k;
		encode(&v, b);
		CHECK_RC(decode_hdr_exact(b, sizeof(b), &h), k <= PW_WIRE_HB_PONG ? 0 : -EBADMSG);
		if (k <= PW_WIRE_HB_PONG)
			CHECK(h.hb == k && h.psn == 0xdeadbeef + k);
	}
	{
		struct pw_hdr v = valid_hdr(PW_OP_HEARTBEAT), h;
		uint8_t b[PW_WIRE_HDR_LEN];

		v.hb = 0x80000001u;		/* a high bit is not a kind */
		encode(&v, b);
		CHECK_RC(decode_hdr_exact(b, sizeof(b), &h), -EBADMSG);
	}
}

/* ------------------------------------------------------------------ */
/* reject_bad_fields: flags, reserved, NAK syndrome                     */
/* ------------------------------------------------------------------ */

static void test_reject_bad_fields(void)
{
	for (size_t i = 0; i < N_OPS; i++) {
		struct pw_hdr v = valid_hdr(known_ops[i].op), h;
		uint8_t good[PW_WIRE_HDR_LEN], b[PW_WIRE_HDR_LEN];

		encode(&v, good);
		/* Each flag bit alone: only ACK_REQ and SOLICITED exist. */
		for (unsigned bit = 0; bit < 16; bit++) {
			memcpy(b, good, sizeof(b));
			put_le(b + 4, 1u << bit, 2);
			CHECK_RC(decode_hdr_exact(b, sizeof(b), &h),
				 bit < 2 ? 0 : -EBADMSG);
			if (bit < 2)
				CHECK(h.flags == (1u << bit));
		}
		/* Both known flags together are fine on every opcode. */
		memcpy(b, good, sizeof(b));
		put_le(b + 4, PW_WF_ALL, 2);
		CHECK_RC(decode_hdr_exact(b, sizeof(b), &h), 0);
		/* Each bit of the reserved u16 at offset 6. */
		for (unsigned bit = 0; bit < 16; bit++) {
			memcpy(b, good, sizeof(b));
			put_le(b + 6, 1u << bit, 2);
			CHECK_RC(decode_hdr_exact(b, sizeof(b), &h), -EBADMSG);
		}
		/*
		 * Fields an opcode does not use are not checked by v1 decoders
		 * (docs/wire.md: senders write 0, receivers ignore).
		 */
		if (known_ops[i].op != PW_OP_NAK &&
		    known_ops[i].op != PW_OP_READ_REQ &&
		    known_ops[i].op != PW_OP_HEARTBEAT &&	/* reject_link */
		    known_ops[i].cls != PW_WC_CLASS_NOTIFY) {	/* reject_notify */
			memcpy(b, good, sizeof(b));
			memset(b + 8, 0xFF, 16);	/* psn, rkey, raddr */
			memset(b + 28, 0xFF, 20);	/* imm, op1, op2 */
			CHECK_RC(decode_hdr_exact(b, sizeof(b), &h), 0);
		}
	}

	/* NAK syndrome: 1..6 valid; OK (0) and >= 7 invalid. */
	for (uint32_t s = 0; s < 300; s++) {
		struct pw_hdr v = valid_hdr(PW_OP_NAK), h;
		uint8_t b[PW_WIRE_HDR_LEN];

		v.syndrome = s;
		encode(&v, b);
		CHECK_RC(decode_hdr_exact(b, sizeof(b), &h),
			 (s >= 1 && s <= 6) ? 0 : -EBADMSG);
	}
	{
		const uint32_t bad[] = { 0x100, 0x10000, 0x1000000, 0x80000000u,
					 0xFFFFFFFFu, 0x00000106 };
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			struct pw_hdr v = valid_hdr(PW_OP_NAK), h;
			uint8_t b[PW_WIRE_HDR_LEN];

			v.syndrome = bad[i];
			encode(&v, b);
			CHECK_RC(decode_hdr_exact(b, sizeof(b), &h), -EBADMSG);
		}
	}
	/* The imm field of other opcodes is free (syndrome check is NAK only). */
	{
		struct pw_hdr v = valid_hdr(PW_OP_ACK), h;
		uint8_t b[PW_WIRE_HDR_LEN];

		v.imm = 0xFFFFFFFFu;
		encode(&v, b);
		CHECK_RC(decode_hdr_exact(b, sizeof(b), &h), 0);
	}
}

/* ------------------------------------------------------------------ */
/* reject_oversize                                                     */
/* ------------------------------------------------------------------ */

static int hdr_rc_with_len(uint8_t op, uint32_t payload_len)
{
	struct pw_hdr v = valid_hdr(op), h;
	uint8_t b[PW_WIRE_HDR_LEN];

	v.payload_len = payload_len;
	encode(&v, b);
	return decode_hdr_exact(b, sizeof(b), &h);
}

static void test_reject_oversize(void)
{
	for (size_t i = 0; i < N_OPS; i++) {
		const struct op_expect *e = &known_ops[i];

		CHECK_RC(hdr_rc_with_len(e->op, e->min), 0);
		CHECK_RC(hdr_rc_with_len(e->op, e->max), 0);
		CHECK_RC(hdr_rc_with_len(e->op, e->max + 1), -EMSGSIZE);
		CHECK_RC(hdr_rc_with_len(e->op, 0xFFFFFFFFu), -EMSGSIZE);
		CHECK_RC(hdr_rc_with_len(e->op, 0x80000000u + 9), -EMSGSIZE);
		if (e->min > 0) {
			CHECK_RC(hdr_rc_with_len(e->op, e->min - 1), -EMSGSIZE);
			CHECK_RC(hdr_rc_with_len(e->op, 0), -EMSGSIZE);
		}
		if (e->max == 0)
			CHECK_RC(hdr_rc_with_len(e->op, 1), -EMSGSIZE);
	}
	/* Spot checks with concrete numbers, as stated in docs/wire.md. */
	CHECK_RC(hdr_rc_with_len(PW_OP_WRITE, 2147483648u), 0);
	CHECK_RC(hdr_rc_with_len(PW_OP_WRITE, 2147483649u), -EMSGSIZE);
	CHECK_RC(hdr_rc_with_len(PW_OP_SEND, 2147483649u), -EMSGSIZE);
	CHECK_RC(hdr_rc_with_len(PW_OP_CONNECT_REQ, 288), 0);
	CHECK_RC(hdr_rc_with_len(PW_OP_CONNECT_REQ, 289), -EMSGSIZE);
	CHECK_RC(hdr_rc_with_len(PW_OP_CONNECT_REP, 31), -EMSGSIZE);
	CHECK_RC(hdr_rc_with_len(PW_OP_READ_RESP, 7), -EMSGSIZE);
	CHECK_RC(hdr_rc_with_len(PW_OP_READ_RESP, 8), 0);
	CHECK_RC(hdr_rc_with_len(PW_OP_READ_RESP, 2147483656u), 0);
	CHECK_RC(hdr_rc_with_len(PW_OP_READ_RESP, 2147483657u), -EMSGSIZE);
	CHECK_RC(hdr_rc_with_len(PW_OP_ATOMIC_CS, 8), -EMSGSIZE);
	CHECK_RC(hdr_rc_with_len(PW_OP_ACK, 1), -EMSGSIZE);

	/* READ length (imm field of READ_REQ) is bounded like a message. */
	{
		const struct { uint32_t len; int rc; } cases[] = {
			{ 0, 0 }, { 1, 0 }, { 2147483648u, 0 },
			{ 2147483649u, -EMSGSIZE }, { 0xFFFFFFFFu, -EMSGSIZE },
		};
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			struct pw_hdr v = valid_hdr(PW_OP_READ_REQ), h;
			uint8_t b[PW_WIRE_HDR_LEN];

			v.read_len = cases[i].len;
			encode(&v, b);
			CHECK_RC(decode_hdr_exact(b, sizeof(b), &h), cases[i].rc);
			if (cases[i].rc == 0)
				CHECK(h.read_len == cases[i].len);
		}
	}
	/* A huge read_len matters only on READ_REQ: imm is free elsewhere. */
	{
		struct pw_hdr v = valid_hdr(PW_OP_WRITE_IMM), h;
		uint8_t b[PW_WIRE_HDR_LEN];

		v.imm = 0xFFFFFFFFu;
		encode(&v, b);
		CHECK_RC(decode_hdr_exact(b, sizeof(b), &h), 0);
	}
	/*
	 * Precedence as implemented (docs/wire.md documents it): the opcode
	 * and flags are judged before payload_len, payload_len before the NAK
	 * syndrome.
	 */
	{
		struct pw_hdr v = valid_hdr(PW_OP_NAK), h;
		uint8_t b[PW_WIRE_HDR_LEN];

		v.payload_len = 1;
		v.syndrome = 0;
		encode(&v, b);
		CHECK_RC(decode_hdr_exact(b, sizeof(b), &h), -EMSGSIZE);
		v.flags = 0x8000;
		encode(&v, b);
		CHECK_RC(decode_hdr_exact(b, sizeof(b), &h), -EBADMSG);
	}
}

/* ------------------------------------------------------------------ */
/* conn                                                                */
/* ------------------------------------------------------------------ */

static void fill_conn(struct pw_wire_conn *c, uint16_t pdata_len)
{
	memset(c, 0, sizeof(*c));
	c->min_version = 1;
	c->max_version = 1;
	c->features = 0;
	c->qpn = 0x11223344;
	c->max_rd_atomic = 16;
	c->max_dest_rd_atomic = 8;
	c->reason = 0;
	c->pdata_len = pdata_len;
	for (unsigned i = 0; i < pdata_len && i < PW_WIRE_MAX_PDATA; i++)
		c->pdata[i] = (uint8_t)(i * 7 + 3);
}

static int conn_equal(const struct pw_wire_conn *a,
		      const struct pw_wire_conn *b)
{
	return a->min_version == b->min_version &&
	       a->max_version == b->max_version &&
	       a->features == b->features && a->qpn == b->qpn &&
	       a->max_rd_atomic == b->max_rd_atomic &&
	       a->max_dest_rd_atomic == b->max_dest_rd_atomic &&
	       a->reason == b->reason && a->pdata_len == b->pdata_len &&
	       memcmp(a->pdata, b->pdata, a->pdata_len) == 0;
}

static void test_conn(void)
{
	const uint16_t lens[] = { 0, 1, 2, 31, 32, 100, 255, 256 };
	uint8_t b[PW_WIRE_CONN_FIXED_LEN + PW_WIRE_MAX_PDATA + 16];
	struct pw_wire_conn in, out;

	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		size_t n = 32 + (size_t)lens[i];

		fill_conn(&in, lens[i]);
		in.features = 0xA5A5A5A5u;	/* unknown bits pass through */
		in.reason = 111;
		in.min_version = 1;
		in.max_version = 0xFFFF;
		memset(b, 0xEE, sizeof(b));
		CHECK_RC(pw_wire_encode_conn(&in, b, n), (int)n);
		/* The encoder writes exactly n bytes, nothing past them. */
		for (size_t k = n; k < sizeof(b); k++)
			CHECK(b[k] == 0xEE);
		memset(&out, 0x5A, sizeof(out));
		CHECK_RC(decode_conn_exact(b, n, &out), 0);
		CHECK(conn_equal(&in, &out));
		/* Exactly @len: one byte more or less is a size error. */
		CHECK_RC(decode_conn_exact(b, n + 1, &out), -EMSGSIZE);
		CHECK_RC(decode_conn_exact(b, n - 1, &out),
			 n - 1 < 32 ? -ENODATA : -EMSGSIZE);
		/* Re-encoding the decoded struct gives identical bytes. */
		{
			uint8_t b2[sizeof(b)];

			memcpy(b2, b, sizeof(b));
			CHECK_RC(pw_wire_encode_conn(&out, b2, n), (int)n);
			CHECK(memcmp(b, b2, sizeof(b)) == 0);
		}
	}

	/* Encoder refusals. */
	fill_conn(&in, 10);
	CHECK_RC(pw_wire_encode_conn(&in, b, 41), -EINVAL);
	CHECK_RC(pw_wire_encode_conn(&in, b, 0), -EINVAL);
	CHECK_RC(pw_wire_encode_conn(&in, b, 42), 42);
	in.pdata_len = PW_WIRE_MAX_PDATA + 1;
	CHECK_RC(pw_wire_encode_conn(&in, b, sizeof(b)), -EINVAL);
	in.pdata_len = 0xFFFF;
	CHECK_RC(pw_wire_encode_conn(&in, b, sizeof(b)), -EINVAL);

	/* Decoder: pdata_len > 256 even when @len agrees with it. */
	{
		uint8_t big[32 + 300];

		fill_conn(&in, 0);
		CHECK_RC(pw_wire_encode_conn(&in, big, sizeof(big)), 32);
		memset(big + 32, 0, 300);
		put_le(big + 28, 257, 2);
		CHECK_RC(decode_conn_exact(big, 32 + 257, &out), -EMSGSIZE);
		put_le(big + 28, 300, 2);
		CHECK_RC(decode_conn_exact(big, 32 + 300, &out), -EMSGSIZE);
		put_le(big + 28, 0xFFFF, 2);
		CHECK_RC(decode_conn_exact(big, sizeof(big), &out), -EMSGSIZE);
		put_le(big + 28, 256, 2);
		CHECK_RC(decode_conn_exact(big, 32 + 256, &out), 0);
	}

	/* Reserved bytes (24..27, 30..31): every bit of every byte. */
	fill_conn(&in, 4);
	CHECK_RC(pw_wire_encode_conn(&in, b, sizeof(b)), 36);
	{
		const unsigned rsv[] = { 24, 25, 26, 27, 30, 31 };

		for (size_t i = 0; i < sizeof(rsv) / sizeof(rsv[0]); i++) {
			for (unsigned bit = 0; bit < 8; bit++) {
				uint8_t t[36];

				memcpy(t, b, 36);
				t[rsv[i]] = (uint8_t)(1u << bit);
				CHECK_RC(decode_conn_exact(t, 36, &out), -EBADMSG);
			}
		}
	}

	/* Version range: min <= max and min >= 1. */
	{
		const struct { uint16_t lo, hi; int rc; } v[] = {
			{ 1, 1, 0 }, { 1, 2, 0 }, { 2, 5, 0 }, { 1, 0xFFFF, 0 },
			{ 2, 1, -EBADMSG }, { 0xFFFF, 1, -EBADMSG },
			{ 0, 1, -EBADMSG }, { 0, 0, -EBADMSG },
			{ 1, 0, -EBADMSG },
		};
		for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
			fill_conn(&in, 0);
			in.min_version = v[i].lo;
			in.max_version = v[i].hi;
			CHECK_RC(pw_wire_encode_conn(&in, b, sizeof(b)), 32);
			CHECK_RC(decode_conn_exact(b, 32, &out), v[i].rc);
		}
	}

	/* A full CONNECT_REQ message: header then a payload_len-sized conn. */
	{
		uint8_t msg[PW_WIRE_HDR_LEN + 32 + 5];
		struct pw_hdr h = valid_hdr(PW_OP_CONNECT_REQ), d;
		int n;

		fill_conn(&in, 5);
		memcpy(in.pdata, "hello", 5);
		n = pw_wire_encode_conn(&in, msg + PW_WIRE_HDR_LEN,
					sizeof(msg) - PW_WIRE_HDR_LEN);
		CHECK_RC(n, 37);
		h.psn = 0x00C0FFEE;
		h.payload_len = (uint32_t)n;
		pw_wire_encode_hdr(&h, msg);
		CHECK_RC(decode_hdr_exact(msg, sizeof(msg), &d), 0);
		CHECK(d.opcode == PW_OP_CONNECT_REQ && d.psn == 0x00C0FFEE);
		CHECK(d.payload_len == 37);
		CHECK_RC(decode_conn_exact(msg + PW_WIRE_HDR_LEN, d.payload_len,
					   &out), 0);
		CHECK(out.pdata_len == 5 && memcmp(out.pdata, "hello", 5) == 0);
	}
}

/* ------------------------------------------------------------------ */
/* trailer                                                             */
/* ------------------------------------------------------------------ */

static void test_trailer(void)
{
	uint8_t t[PW_WIRE_READ_TRAILER_LEN + 4];
	uint32_t syn;

	for (uint32_t s = 0; s < PW_SYN_MAX; s++) {
		memset(t, 0xEE, sizeof(t));
		pw_wire_encode_trailer(s, t);
		CHECK(t[0] == s && t[1] == 0 && t[2] == 0 && t[3] == 0);
		CHECK(t[4] == 0 && t[5] == 0 && t[6] == 0 && t[7] == 0);
		CHECK(t[8] == 0xEE);	/* exactly 8 bytes written */
		syn = 0xDEAD;
		CHECK_RC(decode_trailer_exact(t, 8, &syn), 0);
		CHECK(syn == s);
		/* Only the first 8 bytes are the trailer. */
		CHECK_RC(decode_trailer_exact(t, sizeof(t), &syn), 0);
	}
	/* Unknown syndromes. */
	{
		const uint32_t bad[] = { 7, 8, 255, 256, 0x10000, 0x80000000u,
					 0xFFFFFFFFu };
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			pw_wire_encode_trailer(bad[i], t);
			CHECK_RC(decode_trailer_exact(t, 8, &syn), -EBADMSG);
		}
	}
	/* Reserved u32: any bit set is invalid. */
	for (unsigned bit = 0; bit < 32; bit++) {
		pw_wire_encode_trailer(PW_SYN_OK, t);
		put_le(t + 4, 1u << bit, 4);
		CHECK_RC(decode_trailer_exact(t, 8, &syn), -EBADMSG);
	}
	/* Little-endian: 0x0A0B0C0D goes out as 0D 0C 0B 0A. */
	pw_wire_encode_trailer(0x0A0B0C0Du, t);
	CHECK(t[0] == 0x0D && t[1] == 0x0C && t[2] == 0x0B && t[3] == 0x0A);

	/*
	 * A complete READ_RESP as it appears on the wire: header, read_len
	 * data bytes, then the trailer at payload_len - 8.
	 */
	{
		uint8_t msg[PW_WIRE_HDR_LEN + 16 + 8];
		struct pw_hdr h = valid_hdr(PW_OP_READ_RESP), d;

		h.payload_len = 16 + 8;
		h.psn = 42;
		pw_wire_encode_hdr(&h, msg);
		memset(msg + PW_WIRE_HDR_LEN, 0xAB, 16);
		pw_wire_encode_trailer(PW_SYN_REMOTE_ACCESS,
				       msg + PW_WIRE_HDR_LEN + 16);
		CHECK_RC(decode_hdr_exact(msg, sizeof(msg), &d), 0);
		CHECK(d.payload_len == 24);
		CHECK_RC(decode_trailer_exact(msg + PW_WIRE_HDR_LEN +
					      d.payload_len - 8, 8, &syn), 0);
		CHECK(syn == PW_SYN_REMOTE_ACCESS);
	}
}

/* ------------------------------------------------------------------ */
/* psn_cmp                                                             */
/* ------------------------------------------------------------------ */

static int sign(int v)
{
	return (v > 0) - (v < 0);
}

static void test_psn_cmp(void)
{
	const uint32_t bases[] = { 0, 1, 100, 0x7FFFFFFFu, 0x80000000u,
				   0xFFFFFFFEu, 0xFFFFFFFFu };

	CHECK(pw_psn_cmp(0, 0) == 0);
	CHECK(pw_psn_cmp(1, 0) > 0);
	CHECK(pw_psn_cmp(0, 1) < 0);
	/* Wrap-around: 0 comes after 0xFFFFFFFF. */
	CHECK(pw_psn_cmp(0, 0xFFFFFFFFu) > 0);
	CHECK(pw_psn_cmp(0xFFFFFFFFu, 0) < 0);
	CHECK(pw_psn_cmp(5, 0xFFFFFFF0u) > 0);
	CHECK(pw_psn_cmp(0xFFFFFFF0u, 5) < 0);

	for (size_t i = 0; i < sizeof(bases) / sizeof(bases[0]); i++) {
		uint32_t a = bases[i];

		CHECK(pw_psn_cmp(a, a) == 0);
		CHECK(pw_psn_cmp(a + 1, a) > 0);
		CHECK(pw_psn_cmp(a, a + 1) < 0);
		/* Up to 2^31 - 1 ahead is "later". */
		CHECK(pw_psn_cmp(a + 0x7FFFFFFFu, a) > 0);
		CHECK(pw_psn_cmp(a, a + 0x7FFFFFFFu) < 0);
		/* 2^31 + 1 ahead is seen as behind (serial-number rule). */
		CHECK(pw_psn_cmp(a + 0x80000001u, a) < 0);
	}
	/* Antisymmetric wherever the distance is not exactly 2^31. */
	for (int i = 0; i < 100000; i++) {
		uint32_t a = (uint32_t)rnd(), b = (uint32_t)rnd();

		if (a - b == 0x80000000u)
			continue;
		CHECK(sign(pw_psn_cmp(a, b)) == -sign(pw_psn_cmp(b, a)));
		/* Equal distance shift keeps the order. */
		{
			uint32_t k = (uint32_t)rnd();

			CHECK(sign(pw_psn_cmp(a + k, b + k)) ==
			      sign(pw_psn_cmp(a, b)));
		}
		BAIL_IF_FAILED();
	}
}

/* ------------------------------------------------------------------ */
/* layout and optable: against docs/wire.md                            */
/* ------------------------------------------------------------------ */

static char *doc;

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *s;
	long n;

	if (!f) {
		perror(path);
		return NULL;
	}
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0) {
		fclose(f);
		return NULL;
	}
	s = malloc((size_t)n + 1);
	if (!s || fread(s, 1, (size_t)n, f) != (size_t)n) {
		free(s);
		fclose(f);
		return NULL;
	}
	s[n] = '\0';
	fclose(f);
	return s;
}

#define MAX_ROWS 32
#define MAX_CELLS 10
#define CELL_LEN 64

struct row {
	int ncells;
	char cell[MAX_CELLS][CELL_LEN];
};

/*
 * Read the markdown table between "<!-- pw-table: NAME -->" and
 * "<!-- pw-table: end -->". Cells are trimmed and stripped of backticks;
 * rows whose first cell does not start with a digit (title, ---) are
 * skipped.
 */
static int read_table(const char *name, struct row *rows, int max)
{
	char marker[80];
	const char *p, *end;
	int n = 0;

	snprintf(marker, sizeof(marker), "<!-- pw-table: %s -->", name);
	p = doc ? strstr(doc, marker) : NULL;
	if (!p) {
		fprintf(stderr, "docs/wire.md: table marker '%s' missing\n",
			marker);
		failures++;
		return 0;
	}
	end = strstr(p, "<!-- pw-table: end -->");
	if (!end) {
		fprintf(stderr, "docs/wire.md: table %s not terminated\n", name);
		failures++;
		return 0;
	}
	p = strchr(p, '\n');
	while (p && p < end) {
		const char *line = p + 1;
		const char *eol = strchr(line, '\n');
		struct row r;
		const char *c;

		if (!eol || eol > end)
			eol = end;
		p = eol;
		if (*line != '|')
			continue;
		memset(&r, 0, sizeof(r));
		c = line + 1;
		while (c < eol && r.ncells < MAX_CELLS) {
			const char *bar = memchr(c, '|', (size_t)(eol - c));
			size_t k = 0;

			if (!bar)
				break;
			for (const char *q = c; q < bar; q++) {
				if (*q == '`')
					continue;
				if (k == 0 && (*q == ' ' || *q == '\t'))
					continue;
				if (k < CELL_LEN - 1)
					r.cell[r.ncells][k++] = *q;
			}
			while (k > 0 && (r.cell[r.ncells][k - 1] == ' ' ||
					 r.cell[r.ncells][k - 1] == '\t'))
				k--;
			r.cell[r.ncells][k] = '\0';
			r.ncells++;
			c = bar + 1;
		}
		if (r.ncells == 0 || r.cell[0][0] < '0' || r.cell[0][0] > '9')
			continue;
		if (n < max)
			rows[n++] = r;
	}
	return n;
}

/* A number cell, e.g. "0x10", "48", "2147483648 (2^31)"; -1 if none. */
static long long num(const char *s)
{
	char *e;
	unsigned long long v = strtoull(s, &e, 0);

	return e == s ? -1 : (long long)v;
}

struct field {
	const char *name;
	int off;
	int size;	/* -1: variable */
};

static const struct field hdr_fields[] = {
	{ "magic0", 0, 1 }, { "magic1", 1, 1 }, { "version", 2, 1 },
	{ "opcode", 3, 1 }, { "flags", 4, 2 }, { "reserved", 6, 2 },
	{ "psn", 8, 4 }, { "rkey", 12, 4 }, { "raddr", 16, 8 },
	{ "payload_len", 24, 4 }, { "imm", 28, 4 }, { "op1", 32, 8 },
	{ "op2", 40, 8 },
};

static const struct field conn_fields[] = {
	{ "min_version", 0, 2 }, { "max_version", 2, 2 },
	{ "features", 4, 4 }, { "qpn", 8, 4 }, { "max_rd_atomic", 12, 4 },
	{ "max_dest_rd_atomic", 16, 4 }, { "reason", 20, 4 },
	{ "reserved", 24, 4 }, { "pdata_len", 28, 2 }, { "reserved", 30, 2 },
	{ "pdata", 32, -1 },
};

static const struct field trailer_fields[] = {
	{ "syndrome", 0, 4 }, { "reserved", 4, 4 },
};

/*
 * Check a layout table of the doc against @want (from wire.h's comments)
 * and that it tiles [0, total) with no gap or overlap. Returns the number
 * of rows that matched, so the byte-level checks below can use the doc's
 * own offsets.
 */
static int check_layout_table(const char *table, const struct field *want,
			      int nwant, int total, struct field *got)
{
	struct row rows[MAX_ROWS];
	int n = read_table(table, rows, MAX_ROWS), next = 0;

	if (n != nwant) {
		fprintf(stderr, "docs/wire.md %s: %d rows, want %d\n", table,
			n, nwant);
		failures++;
	}
	for (int i = 0; i < n && i < nwant; i++) {
		long long off = num(rows[i].cell[0]);
		long long size = num(rows[i].cell[1]);

		if (rows[i].ncells < 3) {
			failures++;
			continue;
		}
		got[i].name = want[i].name;
		got[i].off = (int)off;
		got[i].size = want[i].size < 0 ? -1 : (int)size;
		if (strcmp(rows[i].cell[2], want[i].name) != 0 ||
		    off != want[i].off ||
		    (want[i].size >= 0 && size != want[i].size)) {
			fprintf(stderr, "docs/wire.md %s row %d: '%s' at %lld "
				"size %lld, want '%s' at %d size %d\n", table,
				i, rows[i].cell[2], off, size, want[i].name,
				want[i].off, want[i].size);
			failures++;
		}
		if (off != next) {
			fprintf(stderr, "docs/wire.md %s: gap/overlap at %lld\n",
				table, off);
			failures++;
		}
		next = (int)off + (want[i].size < 0 ? 0 : (int)size);
	}
	if (total >= 0 && next != total) {
		fprintf(stderr, "docs/wire.md %s: fields end at %d, want %d\n",
			table, next, total);
		failures++;
	}
	return n < nwant ? n : nwant;
}

static const struct field *fld(const struct field *f, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (f[i].name && strcmp(f[i].name, name) == 0)
			return &f[i];
	fprintf(stderr, "field %s missing\n", name);
	failures++;
	return NULL;
}

/* The value whose little-endian image at @off is A0+off, A0+off+1, ... */
static uint64_t pattern(int off, int size)
{
	uint64_t v = 0;

	for (int i = 0; i < size; i++)
		v |= (uint64_t)(uint8_t)(0xA0 + off + i) << (8 * i);
	return v;
}

static void check_le_at(const uint8_t *buf, const struct field *f,
			uint64_t v, const char *what)
{
	if (!f)
		return;
	for (int i = 0; i < f->size; i++) {
		if (buf[f->off + i] != (uint8_t)(v >> (8 * i))) {
			fprintf(stderr, "%s.%s byte %d (offset %d) = 0x%02x, "
				"want 0x%02x (little-endian)\n", what, f->name,
				i, f->off + i, buf[f->off + i],
				(uint8_t)(v >> (8 * i)));
			failures++;
		}
	}
}

static void layout_header(void)
{
	struct field g[13] = { { 0 } };
	const int nf = (int)(sizeof(hdr_fields) / sizeof(hdr_fields[0]));
	int n = check_layout_table("header", hdr_fields, nf, PW_WIRE_HDR_LEN, g);
	const struct field *f;
	struct pw_hdr h, d;
	uint8_t b[PW_WIRE_HDR_LEN];

	if (n != nf)
		return;

	/* Encode side: each field lands at the doc's offset, LSB first. */
	memset(&h, 0, sizeof(h));
	h.opcode = PW_OP_ATOMIC_CS;
	h.flags = 0xB1A2;	/* raw encoder: validity is the decoder's job */
	h.psn = (uint32_t)pattern(fld(g, nf, "psn")->off, 4);
	h.rkey = (uint32_t)pattern(fld(g, nf, "rkey")->off, 4);
	h.raddr = pattern(fld(g, nf, "raddr")->off, 8);
	h.payload_len = (uint32_t)pattern(fld(g, nf, "payload_len")->off, 4);
	h.imm = (uint32_t)pattern(fld(g, nf, "imm")->off, 4);
	h.compare_add = pattern(fld(g, nf, "op1")->off, 8);
	h.swap = pattern(fld(g, nf, "op2")->off, 8);
	encode(&h, b);
	check_le_at(b, fld(g, nf, "magic0"), 0x50, "hdr");
	check_le_at(b, fld(g, nf, "magic1"), 0x57, "hdr");
	check_le_at(b, fld(g, nf, "version"), 1, "hdr");
	check_le_at(b, fld(g, nf, "opcode"), PW_OP_ATOMIC_CS, "hdr");
	check_le_at(b, fld(g, nf, "flags"), 0xB1A2, "hdr");
	check_le_at(b, fld(g, nf, "reserved"), 0, "hdr");
	f = fld(g, nf, "psn");
	check_le_at(b, f, pattern(f->off, 4), "hdr");
	f = fld(g, nf, "rkey");
	check_le_at(b, f, pattern(f->off, 4), "hdr");
	f = fld(g, nf, "raddr");
	check_le_at(b, f, pattern(f->off, 8), "hdr");
	f = fld(g, nf, "payload_len");
	check_le_at(b, f, pattern(f->off, 4), "hdr");
	f = fld(g, nf, "imm");
	check_le_at(b, f, pattern(f->off, 4), "hdr");
	f = fld(g, nf, "op1");
	check_le_at(b, f, pattern(f->off, 8), "hdr");
	f = fld(g, nf, "op2");
	check_le_at(b, f, pattern(f->off, 8), "hdr");

	/*
	 * Decode side: an image built by hand from the doc's offsets decodes
	 * to the expected values (WRITE_IMM: every field is meaningful).
	 */
	memset(b, 0, sizeof(b));
	b[fld(g, nf, "magic0")->off] = 'P';
	b[fld(g, nf, "magic1")->off] = 'W';
	b[fld(g, nf, "version")->off] = 1;
	b[fld(g, nf, "opcode")->off] = PW_OP_WRITE_IMM;
	put_le(b + fld(g, nf, "flags")->off, 0x0003, 2);
	put_le(b + fld(g, nf, "psn")->off, 0x04030201u, 4);
	put_le(b + fld(g, nf, "rkey")->off, 0x14131211u, 4);
	put_le(b + fld(g, nf, "raddr")->off, 0x2827262524232221ULL, 8);
	put_le(b + fld(g, nf, "payload_len")->off, 0x00030201u, 4);
	put_le(b + fld(g, nf, "imm")->off, 0x44434241u, 4);
	put_le(b + fld(g, nf, "op1")->off, 0x5857565554535251ULL, 8);
	put_le(b + fld(g, nf, "op2")->off, 0x6867666564636261ULL, 8);
	CHECK_RC(decode_hdr_exact(b, sizeof(b), &d), 0);
	CHECK(d.version == 1 && d.opcode == PW_OP_WRITE_IMM);
	CHECK(d.flags == (PW_WF_ACK_REQ | PW_WF_SOLICITED));
	CHECK(d.psn == 0x04030201u);
	CHECK(d.rkey == 0x14131211u);
	CHECK(d.raddr == 0x2827262524232221ULL);
	CHECK(d.payload_len == 0x00030201u);
	CHECK(d.imm == 0x44434241u);
	CHECK(d.compare_add == 0x5857565554535251ULL);
	CHECK(d.swap == 0x6867666564636261ULL);
	/* The union members alias the same wire bytes, as documented. */
	CHECK(d.read_len == d.imm && d.syndrome == d.imm);
	CHECK(d.orig == d.compare_add && d.retry_us == d.compare_add);
	/* Flags: ACK_REQ is bit 0, SOLICITED bit 1 of the LE u16. */
	CHECK(PW_WF_ACK_REQ == 0x0001 && PW_WF_SOLICITED == 0x0002);
}

static void layout_conn(void)
{
	struct field g[11] = { { 0 } };
	const int nf = (int)(sizeof(conn_fields) / sizeof(conn_fields[0]));
	int n = check_layout_table("conn", conn_fields, nf, 32, g);
	struct pw_wire_conn c, d;
	uint8_t b[32 + 3];
	const struct field *f;

	if (n != nf)
		return;
	memset(&c, 0, sizeof(c));
	c.min_version = (uint16_t)pattern(fld(g, nf, "min_version")->off, 2);
	c.max_version = (uint16_t)pattern(fld(g, nf, "max_version")->off, 2);
	c.features = (uint32_t)pattern(fld(g, nf, "features")->off, 4);
	c.qpn = (uint32_t)pattern(fld(g, nf, "qpn")->off, 4);
	c.max_rd_atomic = (uint32_t)pattern(fld(g, nf, "max_rd_atomic")->off, 4);
	c.max_dest_rd_atomic =
		(uint32_t)pattern(fld(g, nf, "max_dest_rd_atomic")->off, 4);
	c.reason = (uint32_t)pattern(fld(g, nf, "reason")->off, 4);
	c.pdata_len = 3;
	memcpy(c.pdata, "xyz", 3);
	CHECK_RC(pw_wire_encode_conn(&c, b, sizeof(b)), 35);
	f = fld(g, nf, "min_version");
	check_le_at(b, f, pattern(f->off, 2), "conn");
	f = fld(g, nf, "max_version");
	check_le_at(b, f, pattern(f->off, 2), "conn");
	f = fld(g, nf, "features");
	check_le_at(b, f, pattern(f->off, 4), "conn");
	f = fld(g, nf, "qpn");
	check_le_at(b, f, pattern(f->off, 4), "conn");
	f = fld(g, nf, "max_rd_atomic");
	check_le_at(b, f, pattern(f->off, 4), "conn");
	f = fld(g, nf, "max_dest_rd_atomic");
	check_le_at(b, f, pattern(f->off, 4), "conn");
	f = fld(g, nf, "reason");
	check_le_at(b, f, pattern(f->off, 4), "conn");
	check_le_at(b, &g[7], 0, "conn");	/* reserved u32 */
	check_le_at(b, fld(g, nf, "pdata_len"), 3, "conn");
	check_le_at(b, &g[9], 0, "conn");	/* reserved u16 */
	CHECK(memcmp(b + fld(g, nf, "pdata")->off, "xyz", 3) == 0);
	/* And the doc's image decodes back (min 0xA1A0 <= max 0xA3A2). */
	CHECK_RC(decode_conn_exact(b, sizeof(b), &d), 0);
	CHECK(conn_equal(&c, &d));
}

static void layout_trailer(void)
{
	struct field g[2] = { { 0 } };
	int n = check_layout_table("trailer", trailer_fields, 2, 8, g);
	uint8_t t[8];
	uint32_t s;

	if (n != 2)
		return;
	pw_wire_encode_trailer(0xA3A2A1A0u, t);
	check_le_at(t, &g[0], 0xA3A2A1A0u, "trailer");
	check_le_at(t, &g[1], 0, "trailer");
	memset(t, 0, sizeof(t));
	put_le(t + g[0].off, PW_SYN_REMOTE_OP, 4);
	CHECK_RC(decode_trailer_exact(t, 8, &s), 0);
	CHECK(s == PW_SYN_REMOTE_OP);
}

/*
 * The hex example of docs/wire.md: lines "+0xOO  hh hh ...  ; comment"
 * inside "<!-- pw-example: NAME -->" ... "<!-- pw-example: end -->".
 */
static size_t read_hex_example(const char *name, uint8_t *out, size_t max)
{
	char marker[80];
	const char *p, *end;
	size_t n = 0;

	snprintf(marker, sizeof(marker), "<!-- pw-example: %s -->", name);
	p = doc ? strstr(doc, marker) : NULL;
	end = p ? strstr(p, "<!-- pw-example: end -->") : NULL;
	if (!p || !end) {
		fprintf(stderr, "docs/wire.md: example '%s' missing\n", name);
		failures++;
		return 0;
	}
	while ((p = strchr(p, '\n')) && p < end) {
		const char *q = ++p;
		char *e;
		unsigned long off;

		if (strncmp(q, "+0x", 3) != 0)
			continue;
		off = strtoul(q + 1, &e, 16);
		if (off != n) {
			fprintf(stderr, "docs/wire.md example %s: offset 0x%lx, "
				"expected 0x%zx\n", name, off, n);
			failures++;
		}
		q = e;
		for (;;) {
			unsigned hi, lo;

			while (*q == ' ' || *q == '\t')
				q++;
			if (!((q[0] >= '0' && q[0] <= '9') ||
			      (q[0] >= 'a' && q[0] <= 'f')) ||
			    !((q[1] >= '0' && q[1] <= '9') ||
			      (q[1] >= 'a' && q[1] <= 'f')) ||
			    !(q[2] == ' ' || q[2] == '\n' || q[2] == '\t'))
				break;
			hi = (unsigned)(q[0] <= '9' ? q[0] - '0' : q[0] - 'a' + 10);
			lo = (unsigned)(q[1] <= '9' ? q[1] - '0' : q[1] - 'a' + 10);
			if (n < max)
				out[n] = (uint8_t)(hi << 4 | lo);
			n++;
			q += 2;
		}
	}
	return n;
}

static void layout_examples(void)
{
	uint8_t b[256];
	struct pw_hdr h, w;
	size_t n;

	/* 8-byte RDMA WRITE: header + "pagewire". */
	n = read_hex_example("write", b, sizeof(b));
	CHECK(n == PW_WIRE_HDR_LEN + 8);
	if (n == PW_WIRE_HDR_LEN + 8) {
		CHECK_RC(decode_hdr_exact(b, n, &h), 0);
		CHECK(h.opcode == PW_OP_WRITE && h.flags == PW_WF_ACK_REQ);
		CHECK(h.psn == 100 && h.rkey == 0x1a2b3c4du);
		CHECK(h.raddr == 0x00007f3a12345000ULL);
		CHECK(h.payload_len == 8 && h.imm == 0);
		CHECK(h.compare_add == 0 && h.swap == 0);
		CHECK(memcmp(b + PW_WIRE_HDR_LEN, "pagewire", 8) == 0);
		/* And it is exactly what our encoder produces. */
		memset(&w, 0, sizeof(w));
		w.opcode = PW_OP_WRITE;
		w.flags = PW_WF_ACK_REQ;
		w.psn = 100;
		w.rkey = 0x1a2b3c4du;
		w.raddr = 0x00007f3a12345000ULL;
		w.payload_len = 8;
		{
			uint8_t e[PW_WIRE_HDR_LEN];

			encode(&w, e);
			CHECK(memcmp(e, b, PW_WIRE_HDR_LEN) == 0);
		}
	}
	/* ... and its ACK. */
	n = read_hex_example("ack", b, sizeof(b));
	CHECK(n == PW_WIRE_HDR_LEN);
	if (n == PW_WIRE_HDR_LEN) {
		uint8_t e[PW_WIRE_HDR_LEN];

		CHECK_RC(decode_hdr_exact(b, n, &h), 0);
		CHECK(h.opcode == PW_OP_ACK && h.psn == 100 && h.flags == 0);
		CHECK(h.payload_len == 0 && h.rkey == 0 && h.raddr == 0);
		memset(&w, 0, sizeof(w));
		w.opcode = PW_OP_ACK;
		w.psn = 100;
		encode(&w, e);
		CHECK(memcmp(e, b, PW_WIRE_HDR_LEN) == 0);
	}
}

static void test_layout(void)
{
	layout_header();
	layout_conn();
	layout_trailer();
	layout_examples();
}

static void test_optable(void)
{
	struct row rows[MAX_ROWS];
	int n = read_table("opcodes", rows, MAX_ROWS);
	int seen[256] = { 0 };

	/* Columns: value | name | class | min payload | max payload | recv */
	for (int i = 0; i < n; i++) {
		long long v = num(rows[i].cell[0]);
		const struct op_expect *e = (v >= 0 && v < 256) ? find_op((unsigned)v) : NULL;
		uint8_t cls;

		if (!e || rows[i].ncells < 6) {
			fprintf(stderr, "docs/wire.md opcodes: row '%s' is not "
				"a known opcode\n", rows[i].cell[0]);
			failures++;
			continue;
		}
		seen[v]++;
		cls = !strcmp(rows[i].cell[2], "CM") ? PW_WC_CLASS_CM :
		      !strcmp(rows[i].cell[2], "request") ? PW_WC_CLASS_REQUEST :
		      !strcmp(rows[i].cell[2], "response") ? PW_WC_CLASS_RESPONSE :
		      !strcmp(rows[i].cell[2], "notify") ? PW_WC_CLASS_NOTIFY :
		      !strcmp(rows[i].cell[2], "link") ? PW_WC_CLASS_LINK :
		      PW_WC_CLASS_NONE;
		if (strcmp(rows[i].cell[1], e->name) != 0 ||
		    cls != pw_wire_ops[v].cls ||
		    num(rows[i].cell[3]) != pw_wire_ops[v].min_payload ||
		    num(rows[i].cell[4]) != pw_wire_ops[v].max_payload ||
		    (strcmp(rows[i].cell[5], "yes") == 0) !=
			    (pw_wire_ops[v].needs_recv != 0)) {
			fprintf(stderr, "docs/wire.md opcodes: row 0x%02llx (%s) "
				"disagrees with pw_wire_ops\n", v,
				rows[i].cell[1]);
			failures++;
		}
	}
	for (size_t i = 0; i < N_OPS; i++) {
		if (seen[known_ops[i].op] != 1) {
			fprintf(stderr, "docs/wire.md opcodes: 0x%02x listed %d "
				"times\n", known_ops[i].op,
				seen[known_ops[i].op]);
			failures++;
		}
	}

	/* Flags and syndromes tables: value <-> name. */
	{
		const struct { long long v; const char *name; } fl[] = {
			{ PW_WF_ACK_REQ, "ACK_REQ" },
			{ PW_WF_SOLICITED, "SOLICITED" },
		};
		const struct { long long v; const char *name; } sy[] = {
			{ PW_SYN_OK, "OK" }, { PW_SYN_RNR, "RNR" },
			{ PW_SYN_PSN_SEQ, "PSN_SEQ" },
			{ PW_SYN_INVALID_REQ, "INVALID_REQ" },
			{ PW_SYN_REMOTE_ACCESS, "REMOTE_ACCESS" },
			{ PW_SYN_REMOTE_OP, "REMOTE_OP" },
			{ PW_SYN_PAGE_FAULT, "PAGE_FAULT" },
		};

		n = read_table("flags", rows, MAX_ROWS);
		CHECK(n == 2);
		for (int i = 0; i < n && i < 2; i++)
			CHECK(num(rows[i].cell[0]) == fl[i].v &&
			      strcmp(rows[i].cell[1], fl[i].name) == 0);
		n = read_table("syndromes", rows, MAX_ROWS);
		CHECK(n == PW_SYN_MAX);
		for (int i = 0; i < n && i < PW_SYN_MAX; i++)
			CHECK(num(rows[i].cell[0]) == sy[i].v &&
			      strcmp(rows[i].cell[1], sy[i].name) == 0);
	}
}

/* ------------------------------------------------------------------ */

static const struct {
	const char *name;
	void (*fn)(void);
	int needs_doc;
} tests[] = {
	{ "roundtrip", test_roundtrip, 0 },
	{ "reject_truncated", test_reject_truncated, 0 },
	{ "reject_bad_magic", test_reject_bad_magic, 0 },
	{ "reject_unknown_opcode", test_reject_unknown_opcode, 0 },
	{ "reject_bad_fields", test_reject_bad_fields, 0 },
	{ "reject_notify", test_reject_notify, 0 },
	{ "reject_link", test_reject_link, 0 },
	{ "reject_oversize", test_reject_oversize, 0 },
	{ "conn", test_conn, 0 },
	{ "trailer", test_trailer, 0 },
	{ "psn_cmp", test_psn_cmp, 0 },
	{ "layout", test_layout, 1 },
	{ "optable", test_optable, 1 },
};

int main(int argc, char **argv)
{
	int ran = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s TEST|all [docs/wire.md]\n", argv[0]);
		return 2;
	}
	if (argc >= 3)
		doc = slurp(argv[2]);
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		if (strcmp(argv[1], "all") != 0 &&
		    strcmp(argv[1], tests[i].name) != 0)
			continue;
		if (tests[i].needs_doc && !doc) {
			fprintf(stderr, "%s: needs the path of docs/wire.md\n",
				tests[i].name);
			failures++;
			continue;
		}
		tests[i].fn();
		ran++;
		printf("%s: %s\n", tests[i].name, failures ? "FAIL" : "ok");
	}
	free(doc);
	if (!ran) {
		fprintf(stderr, "unknown test '%s'\n", argv[1]);
		return 2;
	}
	return failures ? 1 : 0;
}
