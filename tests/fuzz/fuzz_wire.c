/* SPDX-License-Identifier: MIT */
/*
 * Fuzz harness for every wire v1 decoder (src/wire/wire.c).
 *
 * Each input is used three ways:
 *  1. as a TCP byte stream: header, payload, header, ... exactly as the
 *     engine's receive path walks it, decoding connection payloads and
 *     READ_RESP trailers where they occur;
 *  2. as a bare connection payload (pw_wire_decode_conn);
 *  3. as a bare READ_RESP trailer (pw_wire_decode_trailer).
 *
 * Every decoder result is compared with an independent model of
 * docs/wire.md (exact return code, including the documented precedence),
 * and every success must re-encode to the same bytes. Each decoder gets a
 * private copy of exactly `len` bytes, so a read past `len` is caught: by
 * ASan when built with it, else by a PROT_NONE guard page placed right after
 * the copy (this is what makes the gcc replay build meaningful too).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_wire.h"
#include "wire/wire.h"

#if defined(__SANITIZE_ADDRESS__)
#define FUZZ_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FUZZ_ASAN 1
#endif
#endif

unsigned long fuzz_wire_counts[FDEC_N][FRC_N];

#define FUZZ_CHECK(cond)						\
	do {								\
		if (!(cond)) {						\
			fprintf(stderr, "fuzz_wire: invariant failed at "\
				"%s:%d: %s\n", __FILE__, __LINE__, #cond); \
			abort();					\
		}							\
	} while (0)

/* ------------------------------------------------------------------ */
/* Exact-length copies                                                 */
/* ------------------------------------------------------------------ */

#ifndef FUZZ_ASAN
#define GUARD_AREA (64 * 1024)

static uint8_t *guard_base;	/* GUARD_AREA bytes, then a PROT_NONE page */
#endif

/*
 * Copy @n bytes so that byte @n is unreadable. Returns the copy; *heap says
 * whether copy_put() must free it.
 */
static const uint8_t *copy_get(const uint8_t *src, size_t n, int *heap)
{
	uint8_t *p;

#ifndef FUZZ_ASAN
	if (!guard_base) {
		long pg = sysconf(_SC_PAGESIZE);
		size_t total = GUARD_AREA + (size_t)pg;
		void *m = mmap(NULL, total, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		FUZZ_CHECK(m != MAP_FAILED);
		FUZZ_CHECK(mprotect((uint8_t *)m + GUARD_AREA, (size_t)pg,
				    PROT_NONE) == 0);
		guard_base = m;
	}
	if (n <= GUARD_AREA) {
		p = guard_base + GUARD_AREA - n;
		if (n)
			memcpy(p, src, n);
		*heap = 0;
		return p;
	}
#endif
	/* Under ASan, malloc's redzones catch both over- and under-reads. */
	p = malloc(n ? n : 1);
	FUZZ_CHECK(p != NULL);
	if (n)
		memcpy(p, src, n);
	*heap = 1;
	return p;
}

static void copy_put(const uint8_t *p, int heap)
{
	if (heap)
		free((void *)p);
}

/* ------------------------------------------------------------------ */
/* The model: docs/wire.md written out again, independently of wire.c  */
/* ------------------------------------------------------------------ */

static uint64_t le(const uint8_t *p, unsigned size)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < size; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

struct model_op {
	int known;
	int cm;
	uint32_t min, max;
};

static struct model_op model_op(unsigned op)
{
	struct model_op m = { 0, 0, 0, 0 };

	switch (op) {
	case 0x01: case 0x02: case 0x03:
		m = (struct model_op){ 1, 1, 32, 288 };
		break;
	case 0x10: case 0x11: case 0x12: case 0x13:
		m = (struct model_op){ 1, 0, 0, 2147483648u };
		break;
	case 0x14: case 0x15: case 0x16: case 0x20: case 0x21: case 0x23:
		m = (struct model_op){ 1, 0, 0, 0 };
		break;
	case 0x22:
		m = (struct model_op){ 1, 0, 8, 2147483656u };
		break;
	case 0x30: case 0x31: case 0x32:	/* INVALIDATE, VALIDATE, FAULT_IN */
		m = (struct model_op){ 1, 0, 0, 0 };
		break;
	case 0x04:				/* CONNECT_RTU: no payload */
		m = (struct model_op){ 1, 0, 0, 0 };
		break;
	case 0x40: case 0x41:			/* HEARTBEAT, DISCONNECT */
		m = (struct model_op){ 1, 0, 0, 0 };
		break;
	}
	return m;
}

/* Expected pw_wire_decode_hdr() result, checks in the documented order. */
static int model_hdr(const uint8_t *p, size_t len)
{
	struct model_op m;
	uint32_t plen, imm;

	if (len < 48)
		return -ENODATA;
	if (p[0] != 0x50 || p[1] != 0x57 || p[2] != 1)
		return -EPROTO;
	m = model_op(p[3]);
	if (!m.known)
		return -EBADMSG;
	if ((le(p + 4, 2) & ~(uint64_t)3) || le(p + 6, 2))
		return -EBADMSG;
	plen = (uint32_t)le(p + 24, 4);
	if (plen < m.min || plen > m.max)
		return -EMSGSIZE;
	imm = (uint32_t)le(p + 28, 4);
	if (p[3] == 0x14 && imm > 2147483648u)
		return -EMSGSIZE;
	if (p[3] == 0x21 && (imm == 0 || imm >= 7))	/* syndromes 1..6 */
		return -EBADMSG;
	if (p[3] == 0x40 && imm > 2)		/* HEARTBEAT: 0, PING or PONG */
		return -EBADMSG;
	if (p[3] >= 0x30 && p[3] < 0x40) {
		uint64_t raddr = le(p + 16, 8), rlen = le(p + 32, 8);

		/* a non-empty range that does not wrap */
		if (rlen == 0 || rlen > UINT64_MAX - raddr)
			return -EBADMSG;
		if (p[3] == 0x30 && imm != 0)		/* INVALIDATE: no imm */
			return -EBADMSG;
		if (p[3] == 0x31 && imm != 0 && imm != 4) /* VALIDATE: OK or REMOTE_ACCESS */
			return -EBADMSG;
		if (p[3] == 0x32 && (imm & ~1u))	/* FAULT_IN: bit 0 write */
			return -EBADMSG;
	}
	return 0;
}

static int model_conn(const uint8_t *p, size_t len)
{
	uint16_t lo, hi, pdl;

	if (len < 32)
		return -ENODATA;
	if (le(p + 24, 4) || le(p + 30, 2))
		return -EBADMSG;
	lo = (uint16_t)le(p, 2);
	hi = (uint16_t)le(p + 2, 2);
	if (lo == 0 || lo > hi)
		return -EBADMSG;
	pdl = (uint16_t)le(p + 28, 2);
	if (pdl > 256 || len != 32 + (size_t)pdl)
		return -EMSGSIZE;
	return 0;
}

static int model_trailer(const uint8_t *p, size_t len)
{
	if (len < 8)
		return -ENODATA;
	if (le(p, 4) >= 7 || le(p + 4, 4))
		return -EBADMSG;
	return 0;
}

static void count(enum fuzz_dec d, int rc)
{
	enum fuzz_rc r;

	switch (rc) {
	case 0: r = FRC_OK; break;
	case -ENODATA: r = FRC_ENODATA; break;
	case -EPROTO: r = FRC_EPROTO; break;
	case -EBADMSG: r = FRC_EBADMSG; break;
	case -EMSGSIZE: r = FRC_EMSGSIZE; break;
	default:
		fprintf(stderr, "fuzz_wire: undocumented return code %d\n", rc);
		abort();
	}
	fuzz_wire_counts[d][r]++;
}

/* ------------------------------------------------------------------ */
/* Checked decoders                                                    */
/* ------------------------------------------------------------------ */

static int check_hdr(const uint8_t *src, size_t len, struct pw_hdr *out)
{
	int heap, rc, want;
	const uint8_t *p = copy_get(src, len, &heap);
	struct pw_hdr h;

	memset(&h, 0xA5, sizeof(h));
	rc = pw_wire_decode_hdr(p, len, &h);
	copy_put(p, heap);
	count(FDEC_HDR, rc);
	want = model_hdr(src, len);
	if (rc != want) {
		fprintf(stderr, "fuzz_wire: decode_hdr = %d, model says %d\n",
			rc, want);
		abort();
	}
	if (rc == 0) {
		const struct pw_wire_opinfo *oi;
		uint8_t re[PW_WIRE_HDR_LEN];

		FUZZ_CHECK(h.version == PW_WIRE_VERSION);
		FUZZ_CHECK(h.opcode < PW_OP_MAX);
		oi = &pw_wire_ops[h.opcode];
		FUZZ_CHECK(oi->cls != PW_WC_CLASS_NONE && oi->name);
		FUZZ_CHECK(strcmp(pw_wire_op_name(h.opcode), oi->name) == 0);
		FUZZ_CHECK((h.flags & ~PW_WF_ALL) == 0);
		FUZZ_CHECK(h.payload_len >= oi->min_payload &&
			   h.payload_len <= oi->max_payload);
		FUZZ_CHECK(h.payload_len <= PW_WIRE_MAX_PAYLOAD +
					    PW_WIRE_READ_TRAILER_LEN);
		if (h.opcode == PW_OP_READ_REQ)
			FUZZ_CHECK(h.read_len <= PW_WIRE_MAX_PAYLOAD);
		if (h.opcode == PW_OP_NAK)
			FUZZ_CHECK(h.syndrome > PW_SYN_OK &&
				   h.syndrome < PW_SYN_MAX);
		/* Each field is what the documented offset holds. */
		FUZZ_CHECK(h.psn == le(src + 8, 4));
		FUZZ_CHECK(h.rkey == le(src + 12, 4));
		FUZZ_CHECK(h.raddr == le(src + 16, 8));
		FUZZ_CHECK(h.payload_len == le(src + 24, 4));
		FUZZ_CHECK(h.imm == le(src + 28, 4));
		FUZZ_CHECK(h.compare_add == le(src + 32, 8));
		FUZZ_CHECK(h.swap == le(src + 40, 8));
		/* decode then encode is the identity on valid headers. */
		pw_wire_encode_hdr(&h, re);
		FUZZ_CHECK(memcmp(re, src, PW_WIRE_HDR_LEN) == 0);
		if (out)
			*out = h;
	}
	return rc;
}

static int check_conn(const uint8_t *src, size_t len)
{
	int heap, rc, want;
	const uint8_t *p = copy_get(src, len, &heap);
	struct pw_wire_conn c;

	memset(&c, 0xA5, sizeof(c));
	rc = pw_wire_decode_conn(p, len, &c);
	copy_put(p, heap);
	count(FDEC_CONN, rc);
	want = model_conn(src, len);
	if (rc != want) {
		fprintf(stderr, "fuzz_wire: decode_conn = %d, model says %d\n",
			rc, want);
		abort();
	}
	if (rc == 0) {
		uint8_t re[PW_WIRE_CONN_FIXED_LEN + PW_WIRE_MAX_PDATA];
		int n;

		FUZZ_CHECK(c.pdata_len <= PW_WIRE_MAX_PDATA);
		FUZZ_CHECK(len == PW_WIRE_CONN_FIXED_LEN + (size_t)c.pdata_len);
		FUZZ_CHECK(c.min_version >= 1 &&
			   c.min_version <= c.max_version);
		FUZZ_CHECK(c.qpn == le(src + 8, 4));
		FUZZ_CHECK(c.reason == le(src + 20, 4));
		n = pw_wire_encode_conn(&c, re, sizeof(re));
		FUZZ_CHECK(n >= 0 && (size_t)n == len);
		FUZZ_CHECK(memcmp(re, src, len) == 0);
	}
	return rc;
}

static int check_trailer(const uint8_t *src, size_t len)
{
	int heap, rc, want;
	const uint8_t *p = copy_get(src, len, &heap);
	uint32_t syn = 0xA5A5A5A5u;

	rc = pw_wire_decode_trailer(p, len, &syn);
	copy_put(p, heap);
	count(FDEC_TRAILER, rc);
	want = model_trailer(src, len);
	if (rc != want) {
		fprintf(stderr, "fuzz_wire: decode_trailer = %d, model says "
			"%d\n", rc, want);
		abort();
	}
	if (rc == 0) {
		uint8_t re[PW_WIRE_READ_TRAILER_LEN];

		FUZZ_CHECK(syn < PW_SYN_MAX);
		pw_wire_encode_trailer(syn, re);
		FUZZ_CHECK(memcmp(re, src, sizeof(re)) == 0);
	}
	return rc;
}

/* ------------------------------------------------------------------ */

int fuzz_wire_stream(const uint8_t *data, size_t size)
{
	size_t off = 0;
	int first = 0;

	while (off < size) {
		struct pw_hdr h;
		size_t avail;
		int rc;

		rc = check_hdr(data + off, size - off, &h);
		if (rc)
			return rc;
		avail = size - off - PW_WIRE_HDR_LEN;
		/*
		 * Payload cut short: the engine would wait for more bytes.
		 * Still run the payload decoders on what is there, since a
		 * short buffer is exactly what they must survive.
		 */
		if (avail < h.payload_len) {
			const uint8_t *pl = data + off + PW_WIRE_HDR_LEN;

			if (pw_wire_ops[h.opcode].cls == PW_WC_CLASS_CM &&
			    h.opcode != PW_OP_CONNECT_RTU)
				(void)check_conn(pl, avail);
			if (h.opcode == PW_OP_READ_RESP)
				(void)check_trailer(pl, avail);
			return -ENODATA;
		}
		/* CONNECT_RTU is the one CM message without a connection payload */
		if (pw_wire_ops[h.opcode].cls == PW_WC_CLASS_CM &&
		    h.opcode != PW_OP_CONNECT_RTU) {
			rc = check_conn(data + off + PW_WIRE_HDR_LEN,
					h.payload_len);
			if (rc && !first)
				first = rc;
		}
		if (h.opcode == PW_OP_READ_RESP) {
			/* The trailer is the last 8 bytes of the payload. */
			rc = check_trailer(data + off + PW_WIRE_HDR_LEN +
					   h.payload_len -
					   PW_WIRE_READ_TRAILER_LEN,
					   PW_WIRE_READ_TRAILER_LEN);
			if (rc && !first)
				first = rc;
		}
		/* A bad payload poisons the QP; a receiver stops here. */
		if (first)
			return first;
		off += PW_WIRE_HDR_LEN + (size_t)h.payload_len;
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	(void)fuzz_wire_stream(data, size);
	(void)check_conn(data, size);
	(void)check_trailer(data, size);

	/* The name table agrees with the opcode table for any byte. */
	if (size > 0)
		FUZZ_CHECK(model_op(data[0]).known ==
			   (strcmp(pw_wire_op_name(data[0]), "UNKNOWN") != 0));

	/* PSN order: serial arithmetic is antisymmetric off the 2^31 point. */
	if (size >= 8) {
		uint32_t a = (uint32_t)le(data, 4), b = (uint32_t)le(data + 4, 4);
		int ab = pw_psn_cmp(a, b), ba = pw_psn_cmp(b, a);

		FUZZ_CHECK((ab == 0) == (a == b));
		if (a - b != 0x80000000u)
			FUZZ_CHECK((ab > 0) == (ba < 0));
	}
	return 0;
}
