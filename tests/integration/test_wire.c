/* SPDX-License-Identifier: MIT */
/*
 * Malformed wire input from a raw TCP socket. A raw client completes a
 * valid CONNECT_REQ handshake, so pw_accept returns a QP with receives
 * posted, then misbehaves. The accepted QP must go to error with its
 * receives flushed, the raw socket must see a NAK(INVALID_REQ) or a close,
 * nothing may crash, and the process must keep serving: an existing QP
 * and a fresh connection on the same listener both still move data.
 *
 * Bad handshakes must not break the listener either: pw_accept skips them
 * and returns the next good connection.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pwraw.h"

#define RAW_PSN		1000u
#define RAW_QPN		0x4242u
#define RAW_NRECV	4

/* WRITE + READ through @qa (from side a into side b), verified. */
static void check_data_path(struct pwt_pair *p, struct pw_qp *qa, uint32_t seed)
{
	struct pwt_img src, rem, sink;

	pwt_img_alloc_src(&src, &p->a, 20000, PWT_PINNED, seed);
	pwt_img_alloc(&rem, &p->b, 20000, PWT_ODP, 0);
	pwt_img_alloc(&sink, &p->a, 20000, PWT_PINNED, seed + 1);
	PWT_OK(pwt_post_rdma(qa, PW_WR_RDMA_WRITE, 0xd1, src.buf.addr, 20000,
			     src.buf.lkey, pwt_va(rem.buf.addr), rem.buf.rkey,
			     PW_SEND_SIGNALED));
	PWT_EXPECT_OK(p->a.scq, 0xd1, PW_WC_RDMA_WRITE, 20000, qa->qp_num);
	PWT_OK(pwt_post_rdma(qa, PW_WR_RDMA_READ, 0xd2, sink.buf.addr, 20000,
			     sink.buf.lkey, pwt_va(rem.buf.addr), rem.buf.rkey,
			     PW_SEND_SIGNALED));
	PWT_EXPECT_OK(p->a.scq, 0xd2, PW_WC_RDMA_READ, 20000, qa->qp_num);
	memcpy(rem.want, src.want, 20000);
	memcpy(sink.want, src.want, 20000);
	PWT_IMG_CHECK(&rem);
	PWT_IMG_CHECK(&sink);
	pwt_img_free(&src);
	pwt_img_free(&rem);
	pwt_img_free(&sink);
}

/* The existing QP and a fresh connection on the same listener work. */
static void check_still_serving(struct pwt_pair *p, uint32_t seed)
{
	struct pw_qp *qa, *qb;

	check_data_path(p, p->a.qp, seed);
	pwt_connect_qp(&p->a, &p->b, p->l, NULL, NULL, &qa, &qb);
	PWT_EQ(qb->dest_qp_num, qa->qp_num);
	check_data_path(p, qa, seed + 10);
	PWT_OK(pw_destroy_qp(qa));
	PWT_OK(pw_destroy_qp(qb));
}

/*
 * What the raw peer may see after misbehaving: a NAK with INVALID_REQ, a
 * close or a reset. Anything else (another message, silence) fails.
 */
static void expect_nak_or_close(int fd)
{
	struct pw_hdr h;
	int rc = pwr_read_msg(fd, &h, NULL, 0, NULL, PWT_TIMEOUT_MS);

	if (rc == 0 || rc == -ECONNRESET)
		return;
	PWT_ASSERTF(rc == 1, "raw peer: read %d (%s), want a NAK or a close",
		    rc, pwt_strerr(rc));
	PWT_ASSERTF(h.opcode == PW_OP_NAK, "raw peer got %s, want a NAK or a close",
		    pw_wire_op_name(h.opcode));
	PWT_ASSERTF(h.syndrome == PW_SYN_INVALID_REQ, "NAK syndrome %u, want INVALID_REQ (%u)",
		    h.syndrome, (unsigned int)PW_SYN_INVALID_REQ);
}

/* The accepted QP is in error and its receives are flushed. */
static void expect_raw_qp_dead(struct pwt_side *b, struct pw_qp *qp)
{
	PWT_WAIT_STATE(qp, PW_QPS_ERR);
	for (unsigned int i = 0; i < RAW_NRECV; i++)
		PWT_EXPECT_ERR(b->rcq, 0x100 + i, PW_WC_WR_FLUSH_ERR, qp->qp_num);
	PWT_NO_WC(b->rcq, 0);
}

/* A valid WRITE header to @mr (first request: PSN = the initial PSN). */
static struct pw_hdr write_hdr(const struct pwt_buf *mrbuf, uint32_t len)
{
	struct pw_hdr h;

	memset(&h, 0, sizeof(h));
	h.version = PW_WIRE_VERSION;
	h.opcode = PW_OP_WRITE;
	h.psn = RAW_PSN;
	h.rkey = mrbuf->rkey;
	h.raddr = pwt_va(mrbuf->addr);
	h.payload_len = len;
	return h;
}

enum bad_kind {
	BAD_TRUNC_HDR,
	BAD_TRUNC_PAYLOAD,
	BAD_OVERSIZE,
	BAD_OPCODE,
	BAD_MAGIC,
	BAD_VERSION,
	BAD_FLAGS,
	BAD_RESERVED,
};

static void malformed(enum bad_kind kind)
{
	struct pwt_pair p;
	struct pwt_img tgt;
	struct pw_qp *rqp;
	struct pw_hdr h;
	uint8_t raw[PW_WIRE_HDR_LEN + 100];
	int fd;

	pwt_pair_open(&p, NULL);
	pwt_img_alloc(&tgt, &p.b, 8192, PWT_PINNED, 1);
	fd = pwr_open_accepted(p.l, &p.b, &rqp, RAW_PSN, RAW_QPN, RAW_NRECV);

	h = write_hdr(&tgt.buf, 64);
	pw_wire_encode_hdr(&h, raw);
	switch (kind) {
	case BAD_TRUNC_HDR:
		/* 20 bytes of a header, then EOF. */
		pwt_write_all(fd, raw, 20);
		shutdown(fd, SHUT_WR);
		break;
	case BAD_TRUNC_PAYLOAD:
		/* A WRITE announcing 1000 bytes, 100 sent, then EOF. */
		h.payload_len = 1000;
		pw_wire_encode_hdr(&h, raw);
		pwt_fill(raw + PW_WIRE_HDR_LEN, 100, 2);
		pwt_write_all(fd, raw, sizeof(raw));
		shutdown(fd, SHUT_WR);
		break;
	case BAD_OVERSIZE:
		h.payload_len = 0xfffffff0u;
		pw_wire_encode_hdr(&h, raw);
		pwt_write_all(fd, raw, PW_WIRE_HDR_LEN);
		break;
	case BAD_OPCODE:
		raw[3] = 0x17;	/* a free request slot */
		pwt_write_all(fd, raw, PW_WIRE_HDR_LEN);
		break;
	case BAD_MAGIC:
		raw[0] = 'X';
		pwt_write_all(fd, raw, PW_WIRE_HDR_LEN);
		break;
	case BAD_VERSION:
		raw[2] = PW_WIRE_VERSION + 1;
		pwt_write_all(fd, raw, PW_WIRE_HDR_LEN);
		break;
	case BAD_FLAGS:
		raw[5] = 0x80;	/* flag bit 15 */
		pwt_write_all(fd, raw, PW_WIRE_HDR_LEN);
		break;
	case BAD_RESERVED:
		raw[6] = 1;
		pwt_write_all(fd, raw, PW_WIRE_HDR_LEN);
		break;
	}
	if (kind != BAD_TRUNC_HDR && kind != BAD_TRUNC_PAYLOAD) {
		/* Sanity: the bytes sent really are invalid. */
		struct pw_hdr dummy;

		PWT_ASSERT(pw_wire_decode_hdr(raw, PW_WIRE_HDR_LEN, &dummy) < 0);
	}

	expect_raw_qp_dead(&p.b, rqp);
	expect_nak_or_close(fd);
	/* Nothing of a rejected header landed. */
	if (kind != BAD_TRUNC_PAYLOAD)
		PWT_IMG_CHECK(&tgt);
	check_still_serving(&p, 10 + (uint32_t)kind * 20);

	close(fd);
	PWT_OK(pw_destroy_qp(rqp));
	pwt_img_free(&tgt);
	pwt_pair_close(&p);
}

static void t_truncated_header(const char *arg)
{
	(void)arg;
	malformed(BAD_TRUNC_HDR);
}

static void t_truncated_payload(const char *arg)
{
	(void)arg;
	malformed(BAD_TRUNC_PAYLOAD);
}

static void t_oversize(const char *arg)
{
	(void)arg;
	malformed(BAD_OVERSIZE);
}

static void t_unknown_opcode(const char *arg)
{
	(void)arg;
	malformed(BAD_OPCODE);
}

static void t_bad_magic(const char *arg)
{
	(void)arg;
	malformed(BAD_MAGIC);
}

static void t_bad_version(const char *arg)
{
	(void)arg;
	malformed(BAD_VERSION);
}

static void t_bad_flags(const char *arg)
{
	(void)arg;
	malformed(BAD_FLAGS);
}

static void t_bad_reserved(const char *arg)
{
	(void)arg;
	malformed(BAD_RESERVED);
}

/*
 * Well-formed requests from the raw socket are served as documented: a
 * WRITE with ACK_REQ is ACKed with its PSN and lands, a READ_REQ gets a
 * READ_RESP with the data and an OK trailer, a WRITE with a bad rkey gets
 * NAK(REMOTE_ACCESS) and the QP goes to error.
 */
static void t_raw_ops(const char *arg)
{
	struct pwt_pair p;
	struct pwt_img tgt;
	struct pw_qp *rqp;
	struct pw_hdr h;
	uint8_t payload[256 + PW_WIRE_READ_TRAILER_LEN];
	size_t plen = 0;
	uint32_t syn = 99;
	int fd, rc;

	(void)arg;
	pwt_pair_open(&p, NULL);
	pwt_img_alloc(&tgt, &p.b, 8192, PWT_PINNED, 3);
	fd = pwr_open_accepted(p.l, &p.b, &rqp, RAW_PSN, RAW_QPN, RAW_NRECV);

	h = write_hdr(&tgt.buf, 256);
	h.raddr += 100;
	h.flags = PW_WF_ACK_REQ;
	pwr_send_hdr(fd, &h);
	pwt_fill(payload, 256, 4);
	pwt_write_all(fd, payload, 256);
	rc = pwr_read_msg(fd, &h, NULL, 0, NULL, PWT_TIMEOUT_MS);
	PWT_ASSERTF(rc == 1, "no ACK: %d (%s)", rc, pwt_strerr(rc));
	PWT_ASSERTF(h.opcode == PW_OP_ACK, "got %s, want ACK", pw_wire_op_name(h.opcode));
	PWT_EQ(h.psn, RAW_PSN);
	memcpy(tgt.want + 100, payload, 256);
	PWT_IMG_CHECK(&tgt);

	memset(&h, 0, sizeof(h));
	h.version = PW_WIRE_VERSION;
	h.opcode = PW_OP_READ_REQ;
	h.flags = PW_WF_ACK_REQ;
	h.psn = RAW_PSN + 1;
	h.rkey = tgt.buf.rkey;
	h.raddr = pwt_va(tgt.buf.addr + 50);
	h.read_len = 256;
	pwr_send_hdr(fd, &h);
	rc = pwr_read_msg(fd, &h, payload, sizeof(payload), &plen, PWT_TIMEOUT_MS);
	PWT_ASSERTF(rc == 1, "no READ_RESP: %d (%s)", rc, pwt_strerr(rc));
	PWT_ASSERTF(h.opcode == PW_OP_READ_RESP, "got %s, want READ_RESP",
		    pw_wire_op_name(h.opcode));
	PWT_EQ(h.psn, RAW_PSN + 1);
	PWT_EQ(plen, 256 + PW_WIRE_READ_TRAILER_LEN);
	PWT_MEMEQ(payload, tgt.want + 50, 256);
	PWT_OK(pw_wire_decode_trailer(payload + 256, PW_WIRE_READ_TRAILER_LEN, &syn));
	PWT_EQ(syn, PW_SYN_OK);

	h = write_hdr(&tgt.buf, 8);
	h.psn = RAW_PSN + 2;
	h.rkey ^= 0x5a5a5a5au;
	h.flags = PW_WF_ACK_REQ;
	pwr_send_hdr(fd, &h);
	pwt_write_all(fd, payload, 8);
	for (;;) {
		/* Coalesced ACKs for earlier PSNs may come first. */
		rc = pwr_read_msg(fd, &h, NULL, 0, NULL, PWT_TIMEOUT_MS);
		PWT_ASSERTF(rc == 1, "no NAK: %d (%s)", rc, pwt_strerr(rc));
		if (h.opcode != PW_OP_ACK)
			break;
		PWT_ASSERT(pw_psn_cmp(h.psn, RAW_PSN + 2) < 0);
	}
	PWT_ASSERTF(h.opcode == PW_OP_NAK, "got %s, want NAK", pw_wire_op_name(h.opcode));
	PWT_EQ(h.psn, RAW_PSN + 2);
	PWT_EQ(h.syndrome, PW_SYN_REMOTE_ACCESS);
	expect_raw_qp_dead(&p.b, rqp);
	PWT_IMG_CHECK(&tgt);
	check_still_serving(&p, 200);

	close(fd);
	PWT_OK(pw_destroy_qp(rqp));
	pwt_img_free(&tgt);
	pwt_pair_close(&p);
}

/* ------------------------------------------------------------------ */
/* Bad handshakes                                                       */
/* ------------------------------------------------------------------ */

enum bad_hs {
	HS_GARBAGE,	/* 48 bytes of 0xab */
	HS_EOF,		/* connect, then close at once */
	HS_OPCODE,	/* a valid header, but a WRITE */
	HS_CONN,	/* CONNECT_REQ whose payload is invalid */
};

static void bad_handshake(enum bad_hs kind)
{
	struct pwt_pair p;
	struct pw_qp *qa, *qb;
	uint8_t buf[PW_WIRE_HDR_LEN + PW_WIRE_CONN_FIXED_LEN];
	struct pw_hdr h;
	int fd;

	pwt_pair_open(&p, NULL);
	fd = pwt_tcp_connect(p.port);
	memset(&h, 0, sizeof(h));
	h.version = PW_WIRE_VERSION;
	h.psn = 1;
	switch (kind) {
	case HS_GARBAGE:
		memset(buf, 0xab, sizeof(buf));
		pwt_write_all(fd, buf, PW_WIRE_HDR_LEN);
		break;
	case HS_EOF:
		close(fd);
		fd = -1;
		break;
	case HS_OPCODE:
		h.opcode = PW_OP_WRITE;
		pwr_send_hdr(fd, &h);
		break;
	case HS_CONN: {
		struct pw_wire_conn c;
		int n;

		memset(&c, 0, sizeof(c));
		c.min_version = 0;	/* invalid: versions start at 1 */
		c.max_version = 0;
		n = pw_wire_encode_conn(&c, buf + PW_WIRE_HDR_LEN, PW_WIRE_CONN_FIXED_LEN);
		PWT_EQ(n, PW_WIRE_CONN_FIXED_LEN);
		PWT_ASSERT(pw_wire_decode_conn(buf + PW_WIRE_HDR_LEN, (size_t)n, &c) < 0);
		h.opcode = PW_OP_CONNECT_REQ;
		h.payload_len = (uint32_t)n;
		pw_wire_encode_hdr(&h, buf);
		pwt_write_all(fd, buf, sizeof(buf));
		break;
	}
	}

	/* The bad connection came first; pw_accept returns the good one. */
	pwt_connect_qp(&p.a, &p.b, p.l, NULL, NULL, &qa, &qb);
	PWT_EQ(qb->dest_qp_num, qa->qp_num);
	PWT_EQ(qa->dest_qp_num, qb->qp_num);
	check_data_path(&p, qa, 300);
	check_data_path(&p, p.a.qp, 310);

	if (fd >= 0) {
		/* The bad one is dropped: a close, or at most a CONNECT_REJ. */
		struct pw_hdr r;
		uint8_t payload[PW_WIRE_CONN_FIXED_LEN + PW_WIRE_MAX_PDATA];
		int rc = pwr_read_msg(fd, &r, payload, sizeof(payload), NULL,
				      PWT_TIMEOUT_MS);

		if (rc == 1) {
			PWT_ASSERTF(r.opcode == PW_OP_CONNECT_REJ,
				    "bad handshake answered with %s", pw_wire_op_name(r.opcode));
			rc = pwr_read_msg(fd, &r, NULL, 0, NULL, PWT_TIMEOUT_MS);
		}
		PWT_ASSERTF(rc == 0 || rc == -ECONNRESET,
			    "bad handshake connection not closed: %d (%s)", rc, pwt_strerr(rc));
		close(fd);
	}
	PWT_OK(pw_destroy_qp(qa));
	PWT_OK(pw_destroy_qp(qb));
	pwt_pair_close(&p);
}

static void t_handshake_garbage(const char *arg)
{
	(void)arg;
	bad_handshake(HS_GARBAGE);
}

static void t_handshake_eof(const char *arg)
{
	(void)arg;
	bad_handshake(HS_EOF);
}

static void t_handshake_opcode(const char *arg)
{
	(void)arg;
	bad_handshake(HS_OPCODE);
}

static void t_handshake_conn(const char *arg)
{
	(void)arg;
	bad_handshake(HS_CONN);
}

static const struct pwt_case cases[] = {
	{ "truncated_header", t_truncated_header },
	{ "truncated_payload", t_truncated_payload },
	{ "oversize", t_oversize },
	{ "unknown_opcode", t_unknown_opcode },
	{ "bad_magic", t_bad_magic },
	{ "bad_version", t_bad_version },
	{ "bad_flags", t_bad_flags },
	{ "bad_reserved", t_bad_reserved },
	{ "raw_ops", t_raw_ops },
	{ "handshake_garbage", t_handshake_garbage },
	{ "handshake_eof", t_handshake_eof },
	{ "handshake_opcode", t_handshake_opcode },
	{ "handshake_conn", t_handshake_conn },
};

int main(int argc, char **argv)
{
	return pwt_main(argc, argv, cases, PWT_ARRAY_SIZE(cases));
}
