/* SPDX-License-Identifier: MIT */
/*
 * Every opcode end to end between two contexts of this process, over real
 * TCP on 127.0.0.1: data compared byte for byte, completions checked for
 * status, opcode, byte_len, imm_data, wr_id and qp_num.
 *
 * Sub-tests that take an MR mode (pinned | odp | implicit) use that mode on
 * both sides. In ODP modes target buffers are left untouched before the
 * op, so the remote op itself takes the first-touch fault.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pwtest.h"

/* Nothing may complete on either CQ of a side that only served. */
static void expect_quiet(struct pwt_side *s)
{
	PWT_NO_WC(s->scq, 0);
	PWT_NO_WC(s->rcq, 0);
}

/* ------------------------------------------------------------------ */
/* One op per test, every MR mode                                       */
/* ------------------------------------------------------------------ */

static void t_write(const char *arg)
{
	enum pwt_mode m = pwt_parse_mode(arg);
	const size_t len = 3 * 4096 + 123, off = 4096 + 7;
	struct pwt_pair p;
	struct pwt_img src, dst;

	pwt_pair_open(&p, NULL);
	pwt_img_alloc_src(&src, &p.a, len, m, 1);
	pwt_img_alloc(&dst, &p.b, len + 3 * 4096, m, 2);

	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 0x1001, src.buf.addr,
			     len, src.buf.lkey, pwt_va(dst.buf.addr + off),
			     dst.buf.rkey, PW_SEND_SIGNALED));
	PWT_EXPECT_OK(p.a.scq, 0x1001, PW_WC_RDMA_WRITE, len, p.a.qp->qp_num);
	memcpy(dst.want + off, src.want, len);
	PWT_IMG_CHECK(&dst);
	PWT_IMG_CHECK(&src);
	expect_quiet(&p.b);

	pwt_img_free(&src);
	pwt_img_free(&dst);
	pwt_pair_close(&p);
}

static void t_write_imm(const char *arg)
{
	enum pwt_mode m = pwt_parse_mode(arg);
	const size_t len = 2 * 4096 + 1, off = 99;
	struct pwt_pair p;
	struct pwt_img src, dst;

	pwt_pair_open(&p, NULL);
	pwt_img_alloc_src(&src, &p.a, len, m, 3);
	pwt_img_alloc(&dst, &p.b, len + 4096, m, 4);
	/* WRITE_WITH_IMM consumes a receive but places nothing in it. */
	PWT_OK(pwt_post_recv1(p.b.qp, 0x2001, NULL, 0, 0));

	{
		struct pw_sge sge = { pwt_va(src.buf.addr), (uint32_t)len, src.buf.lkey };
		struct pw_send_wr wr, *bad = NULL;

		memset(&wr, 0, sizeof(wr));
		wr.wr_id = 0x1002;
		wr.sg_list = &sge;
		wr.num_sge = 1;
		wr.opcode = PW_WR_RDMA_WRITE_WITH_IMM;
		wr.send_flags = PW_SEND_SIGNALED;
		wr.imm_data = 0xdeadbeef;
		wr.wr.rdma.remote_addr = pwt_va(dst.buf.addr + off);
		wr.wr.rdma.rkey = dst.buf.rkey;
		PWT_OK(pw_post_send(p.a.qp, &wr, &bad));
	}
	/* The data must be in place when the receive completes. */
	PWT_EXPECT_RECV(p.b.rcq, 0x2001, PW_WC_RECV_RDMA_WITH_IMM, len, true,
			0xdeadbeef, p.b.qp->qp_num);
	memcpy(dst.want + off, src.want, len);
	PWT_IMG_CHECK(&dst);
	PWT_EXPECT_OK(p.a.scq, 0x1002, PW_WC_RDMA_WRITE, len, p.a.qp->qp_num);
	expect_quiet(&p.b);

	pwt_img_free(&src);
	pwt_img_free(&dst);
	pwt_pair_close(&p);
}

static void t_read(const char *arg)
{
	enum pwt_mode m = pwt_parse_mode(arg);
	const size_t len = 3 * 4096, roff = 1000, loff = 5;
	struct pwt_pair p;
	struct pwt_img src, sink;

	pwt_pair_open(&p, NULL);
	pwt_img_alloc(&src, &p.b, 5 * 4096, m, 0);
	/* Two pages and a bit hold data; in ODP modes the rest was never
	 * touched, so the READ also covers pages nobody faulted in. */
	pwt_fill(src.buf.addr, 2 * 4096 + 100, 5);
	memcpy(src.want, src.buf.addr, 2 * 4096 + 100);
	pwt_img_alloc(&sink, &p.a, len + 4096, m, 6);

	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_READ, 0x1003,
			     sink.buf.addr + loff, len, sink.buf.lkey,
			     pwt_va(src.buf.addr + roff), src.buf.rkey,
			     PW_SEND_SIGNALED));
	PWT_EXPECT_OK(p.a.scq, 0x1003, PW_WC_RDMA_READ, len, p.a.qp->qp_num);
	memcpy(sink.want + loff, src.want + roff, len);
	PWT_IMG_CHECK(&sink);
	PWT_IMG_CHECK(&src);
	expect_quiet(&p.b);

	pwt_img_free(&src);
	pwt_img_free(&sink);
	pwt_pair_close(&p);
}

static void do_send(const char *arg, bool with_imm)
{
	enum pwt_mode m = pwt_parse_mode(arg);
	const size_t len = 5000, off = 16;
	struct pwt_pair p;
	struct pwt_img src, rbuf;

	pwt_pair_open(&p, NULL);
	pwt_img_alloc_src(&src, &p.a, len, m, 7);
	pwt_img_alloc(&rbuf, &p.b, 8192, m, 8);
	PWT_OK(pwt_post_recv1(p.b.qp, 0x2002, rbuf.buf.addr + off,
			      8192 - off, rbuf.buf.lkey));
	PWT_OK(pwt_post_send1(p.a.qp, with_imm ? PW_WR_SEND_WITH_IMM : PW_WR_SEND,
			      0x1004, src.buf.addr, len, src.buf.lkey,
			      0x12345678, PW_SEND_SIGNALED));
	PWT_EXPECT_RECV(p.b.rcq, 0x2002, PW_WC_RECV, len, with_imm, 0x12345678,
			p.b.qp->qp_num);
	memcpy(rbuf.want + off, src.want, len);
	PWT_IMG_CHECK(&rbuf);
	PWT_EXPECT_OK(p.a.scq, 0x1004, PW_WC_SEND, len, p.a.qp->qp_num);
	expect_quiet(&p.b);

	pwt_img_free(&src);
	pwt_img_free(&rbuf);
	pwt_pair_close(&p);
}

static void t_send(const char *arg)
{
	do_send(arg, false);
}

static void t_send_imm(const char *arg)
{
	do_send(arg, true);
}

/*
 * One atomic on a u64 in the middle of the target buffer. The neighbours
 * must stay untouched and the local result must hold the original value.
 */
static void do_atomic(const char *arg, enum pw_wr_opcode op,
		      uint64_t compare_add, uint64_t swap, uint64_t want_remote)
{
	enum pwt_mode m = pwt_parse_mode(arg);
	const uint64_t orig = 0x0123456789abcdefull;
	const size_t roff = 4096 + 64, loff = 24;
	struct pwt_pair p;
	struct pwt_img tgt, res;
	uint64_t v;

	pwt_pair_open(&p, NULL);
	pwt_img_alloc(&tgt, &p.b, 3 * 4096, m, 9);
	memcpy(tgt.buf.addr + roff, &orig, 8);
	memcpy(tgt.want + roff, &orig, 8);
	pwt_img_alloc(&res, &p.a, 4096, m, 10);

	PWT_OK(pwt_post_atomic(p.a.qp, op, 0x1005,
			       (uint64_t *)(void *)(res.buf.addr + loff),
			       res.buf.lkey, pwt_va(tgt.buf.addr + roff),
			       tgt.buf.rkey, compare_add, swap, PW_SEND_SIGNALED));
	PWT_EXPECT_OK(p.a.scq, 0x1005,
		      op == PW_WR_ATOMIC_FETCH_AND_ADD ? PW_WC_FETCH_ADD : PW_WC_COMP_SWAP,
		      8, p.a.qp->qp_num);
	memcpy(&v, res.buf.addr + loff, 8);
	PWT_EQ(v, orig);
	memcpy(&v, tgt.buf.addr + roff, 8);
	PWT_EQ(v, want_remote);
	memcpy(res.want + loff, &orig, 8);
	memcpy(tgt.want + roff, &want_remote, 8);
	PWT_IMG_CHECK(&tgt);
	PWT_IMG_CHECK(&res);

	if (op == PW_WR_ATOMIC_FETCH_AND_ADD) {
		/* Adding all ones is a wrapping decrement. */
		PWT_OK(pwt_post_atomic(p.a.qp, op, 0x1006,
				       (uint64_t *)(void *)(res.buf.addr + loff),
				       res.buf.lkey, pwt_va(tgt.buf.addr + roff),
				       tgt.buf.rkey, UINT64_MAX, 0,
				       PW_SEND_SIGNALED));
		PWT_EXPECT_OK(p.a.scq, 0x1006, PW_WC_FETCH_ADD, 8, p.a.qp->qp_num);
		memcpy(&v, res.buf.addr + loff, 8);
		PWT_EQ(v, want_remote);
		memcpy(&v, tgt.buf.addr + roff, 8);
		PWT_EQ(v, want_remote - 1);
	}
	expect_quiet(&p.b);

	pwt_img_free(&tgt);
	pwt_img_free(&res);
	pwt_pair_close(&p);
}

static void t_fetch_add(const char *arg)
{
	do_atomic(arg, PW_WR_ATOMIC_FETCH_AND_ADD, 0x1111, 0,
		  0x0123456789abcdefull + 0x1111);
}

static void t_cmp_swap(const char *arg)
{
	do_atomic(arg, PW_WR_ATOMIC_CMP_AND_SWP, 0x0123456789abcdefull,
		  0xfedcba9876543210ull, 0xfedcba9876543210ull);
}

static void t_cmp_swap_fail(const char *arg)
{
	/* Compare differs: no swap, but the original value still returns. */
	do_atomic(arg, PW_WR_ATOMIC_CMP_AND_SWP, 0x0123456789abcdeeull,
		  0xfedcba9876543210ull, 0x0123456789abcdefull);
}

/* ------------------------------------------------------------------ */
/* Scatter / gather                                                     */
/* ------------------------------------------------------------------ */

#define NSGE 16
static const uint32_t sge_len[NSGE] = {
	1, 7, 4096, 13, 4095, 1, 100, 8192, 3, 17, 4097, 5, 64, 128, 999, 2,
};

/* Pieces come from three local buffers at scattered offsets. */
static void sge_layout(struct pwt_img loc[3], struct pw_sge sge[NSGE],
		       size_t *total)
{
	size_t cur[3] = { 3, 1000, 77 };

	*total = 0;
	for (int i = 0; i < NSGE; i++) {
		int k = (i * 7) % 3;

		sge[i].addr = pwt_va(loc[k].buf.addr + cur[k]);
		sge[i].length = sge_len[i];
		sge[i].lkey = loc[k].buf.lkey;
		cur[k] += sge_len[i] + 11;
		*total += sge_len[i];
	}
}

/* Where sge[i] lives in loc[] and its image. */
static uint8_t *sge_want(struct pwt_img loc[3], const struct pw_sge *s)
{
	for (int k = 0; k < 3; k++) {
		uint64_t base = pwt_va(loc[k].buf.addr);

		if (s->addr >= base && s->addr < base + loc[k].buf.len)
			return loc[k].want + (s->addr - base);
	}
	pwt_fail(__FILE__, __LINE__, "SGE outside the local buffers");
}

static struct pwt_pair_opts sge_opts(void)
{
	struct pwt_pair_opts o;

	memset(&o, 0, sizeof(o));
	o.a_attr.cap.max_send_sge = NSGE;
	o.a_attr.cap.max_recv_sge = NSGE;
	o.b_attr.cap.max_send_sge = NSGE;
	o.b_attr.cap.max_recv_sge = NSGE;
	return o;
}

static void t_write_sge(const char *arg)
{
	enum pwt_mode m = pwt_parse_mode(arg);
	struct pwt_pair_opts o = sge_opts();
	struct pw_sge sge[NSGE];
	struct pw_send_wr wr, *bad = NULL;
	struct pwt_pair p;
	struct pwt_img loc[3], dst;
	size_t total, at = 5;

	pwt_pair_open(&p, &o);
	PWT_ASSERT(p.a.attr.cap.max_send_sge >= NSGE);
	for (int k = 0; k < 3; k++)
		pwt_img_alloc_src(&loc[k], &p.a, 64 * 1024, m, 11 + (uint32_t)k);
	pwt_img_alloc(&dst, &p.b, 64 * 1024, m, 14);
	sge_layout(loc, sge, &total);

	memset(&wr, 0, sizeof(wr));
	wr.wr_id = 0x1010;
	wr.sg_list = sge;
	wr.num_sge = NSGE;
	wr.opcode = PW_WR_RDMA_WRITE;
	wr.send_flags = PW_SEND_SIGNALED;
	wr.wr.rdma.remote_addr = pwt_va(dst.buf.addr + at);
	wr.wr.rdma.rkey = dst.buf.rkey;
	PWT_OK(pw_post_send(p.a.qp, &wr, &bad));
	PWT_EXPECT_OK(p.a.scq, 0x1010, PW_WC_RDMA_WRITE, total, p.a.qp->qp_num);

	/* Gathered in SGE order into one contiguous remote range. */
	for (int i = 0; i < NSGE; i++) {
		memcpy(dst.want + at, sge_want(loc, &sge[i]), sge[i].length);
		at += sge[i].length;
	}
	PWT_IMG_CHECK(&dst);

	for (int k = 0; k < 3; k++)
		pwt_img_free(&loc[k]);
	pwt_img_free(&dst);
	pwt_pair_close(&p);
}

static void t_read_sge(const char *arg)
{
	enum pwt_mode m = pwt_parse_mode(arg);
	struct pwt_pair_opts o = sge_opts();
	struct pw_sge sge[NSGE];
	struct pw_send_wr wr, *bad = NULL;
	struct pwt_pair p;
	struct pwt_img loc[3], src;
	size_t total, at = 333;

	pwt_pair_open(&p, &o);
	for (int k = 0; k < 3; k++)
		pwt_img_alloc(&loc[k], &p.a, 64 * 1024, m, 15 + (uint32_t)k);
	pwt_img_alloc_src(&src, &p.b, 64 * 1024, m, 18);
	sge_layout(loc, sge, &total);

	memset(&wr, 0, sizeof(wr));
	wr.wr_id = 0x1011;
	wr.sg_list = sge;
	wr.num_sge = NSGE;
	wr.opcode = PW_WR_RDMA_READ;
	wr.send_flags = PW_SEND_SIGNALED;
	wr.wr.rdma.remote_addr = pwt_va(src.buf.addr + at);
	wr.wr.rdma.rkey = src.buf.rkey;
	PWT_OK(pw_post_send(p.a.qp, &wr, &bad));
	PWT_EXPECT_OK(p.a.scq, 0x1011, PW_WC_RDMA_READ, total, p.a.qp->qp_num);

	/* Scattered in SGE order. */
	for (int i = 0; i < NSGE; i++) {
		memcpy(sge_want(loc, &sge[i]), src.want + at, sge[i].length);
		at += sge[i].length;
	}
	for (int k = 0; k < 3; k++) {
		PWT_IMG_CHECK(&loc[k]);
		pwt_img_free(&loc[k]);
	}
	PWT_IMG_CHECK(&src);
	pwt_img_free(&src);
	pwt_pair_close(&p);
}

static void t_send_sge(const char *arg)
{
	enum pwt_mode m = pwt_parse_mode(arg);
	struct pwt_pair_opts o = sge_opts();
	struct pw_sge sge[NSGE], rsge[3];
	struct pw_send_wr wr, *bad = NULL;
	struct pw_recv_wr rwr, *rbad = NULL;
	const uint32_t rlen[3] = { 10, 5000, 20000 };
	struct pwt_pair p;
	struct pwt_img loc[3], rb;
	uint8_t *msg;
	size_t total, at = 0, roff[3] = { 7, 300, 9000 };

	pwt_pair_open(&p, &o);
	for (int k = 0; k < 3; k++)
		pwt_img_alloc_src(&loc[k], &p.a, 64 * 1024, m, 19 + (uint32_t)k);
	pwt_img_alloc(&rb, &p.b, 32 * 1024, m, 22);
	sge_layout(loc, sge, &total);
	PWT_ASSERT(total > rlen[0] + rlen[1] && total < rlen[0] + rlen[1] + rlen[2]);

	/* Three receive SGEs of other sizes than the send's: the message is
	 * scattered across them in order, the last one partly filled. */
	for (int i = 0; i < 3; i++) {
		rsge[i].addr = pwt_va(rb.buf.addr + roff[i]);
		rsge[i].length = rlen[i];
		rsge[i].lkey = rb.buf.lkey;
	}
	memset(&rwr, 0, sizeof(rwr));
	rwr.wr_id = 0x2010;
	rwr.sg_list = rsge;
	rwr.num_sge = 3;
	PWT_OK(pw_post_recv(p.b.qp, &rwr, &rbad));

	memset(&wr, 0, sizeof(wr));
	wr.wr_id = 0x1012;
	wr.sg_list = sge;
	wr.num_sge = NSGE;
	wr.opcode = PW_WR_SEND;
	wr.send_flags = PW_SEND_SIGNALED;
	PWT_OK(pw_post_send(p.a.qp, &wr, &bad));
	PWT_EXPECT_RECV(p.b.rcq, 0x2010, PW_WC_RECV, total, false, 0,
			p.b.qp->qp_num);
	PWT_EXPECT_OK(p.a.scq, 0x1012, PW_WC_SEND, total, p.a.qp->qp_num);

	msg = malloc(total);
	PWT_ASSERT(msg);
	for (int i = 0; i < NSGE; i++) {
		memcpy(msg + at, sge_want(loc, &sge[i]), sge[i].length);
		at += sge[i].length;
	}
	at = 0;
	for (int i = 0; i < 3 && at < total; i++) {
		size_t n = total - at < rlen[i] ? total - at : rlen[i];

		memcpy(rb.want + roff[i], msg + at, n);
		at += n;
	}
	PWT_IMG_CHECK(&rb);

	free(msg);
	for (int k = 0; k < 3; k++)
		pwt_img_free(&loc[k]);
	pwt_img_free(&rb);
	pwt_pair_close(&p);
}

/* ------------------------------------------------------------------ */
/* Large messages                                                       */
/* ------------------------------------------------------------------ */

#define LARGE (8 * PWT_MIB)

static void t_large_write(const char *arg)
{
	enum pwt_mode m = pwt_parse_mode(arg);
	struct pwt_pair p;
	struct pwt_img src, dst;

	pwt_pair_open(&p, NULL);
	pwt_img_alloc_src(&src, &p.a, LARGE, m, 23);
	pwt_img_alloc(&dst, &p.b, LARGE + 8192, m, 24);
	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 0x1020, src.buf.addr,
			     LARGE, src.buf.lkey, pwt_va(dst.buf.addr + 4096),
			     dst.buf.rkey, PW_SEND_SIGNALED));
	PWT_EXPECT_OK(p.a.scq, 0x1020, PW_WC_RDMA_WRITE, LARGE, p.a.qp->qp_num);
	memcpy(dst.want + 4096, src.want, LARGE);
	PWT_IMG_CHECK(&dst);
	pwt_img_free(&src);
	pwt_img_free(&dst);
	pwt_pair_close(&p);
}

static void t_large_read(const char *arg)
{
	enum pwt_mode m = pwt_parse_mode(arg);
	struct pwt_pair p;
	struct pwt_img src, sink;

	pwt_pair_open(&p, NULL);
	pwt_img_alloc_src(&src, &p.b, LARGE + 8192, m, 25);
	pwt_img_alloc(&sink, &p.a, LARGE, m, 26);
	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_READ, 0x1021, sink.buf.addr,
			     LARGE, sink.buf.lkey, pwt_va(src.buf.addr + 8191),
			     src.buf.rkey, PW_SEND_SIGNALED));
	PWT_EXPECT_OK(p.a.scq, 0x1021, PW_WC_RDMA_READ, LARGE, p.a.qp->qp_num);
	memcpy(sink.want, src.want + 8191, LARGE);
	PWT_IMG_CHECK(&sink);
	pwt_img_free(&src);
	pwt_img_free(&sink);
	pwt_pair_close(&p);
}

/* ------------------------------------------------------------------ */
/* Inline, signaling, chains                                            */
/* ------------------------------------------------------------------ */

static struct pwt_pair_opts inline_opts(void)
{
	struct pwt_pair_opts o;

	memset(&o, 0, sizeof(o));
	o.a_attr.cap.max_inline_data = PW_MAX_INLINE_DATA;
	return o;
}

/*
 * Inline data is copied at post time: the source may be unregistered
 * (lkey ignored, as in verbs) and is scribbled over right after posting.
 */
static void t_write_inline(const char *arg)
{
	struct pwt_pair_opts o = inline_opts();
	uint8_t stackbuf[PW_MAX_INLINE_DATA], orig[PW_MAX_INLINE_DATA];
	struct pw_sge sge[3] = {
		{ pwt_va(stackbuf), 300, 0 },
		{ pwt_va(stackbuf + 300), 400, 0 },
		{ pwt_va(stackbuf + 700), 300, 0 },
	};
	struct pw_send_wr wr, *bad = NULL;
	struct pwt_pair p;
	struct pwt_img dst;

	(void)arg;
	pwt_pair_open(&p, &o);
	PWT_ASSERT(p.a.attr.cap.max_inline_data >= PW_MAX_INLINE_DATA);
	pwt_img_alloc(&dst, &p.b, 8192, PWT_PINNED, 27);

	pwt_fill(stackbuf, sizeof(stackbuf), 28);
	memcpy(orig, stackbuf, sizeof(orig));
	memset(&wr, 0, sizeof(wr));
	wr.wr_id = 0x1030;
	wr.sg_list = sge;
	wr.num_sge = 3;
	wr.opcode = PW_WR_RDMA_WRITE;
	wr.send_flags = PW_SEND_SIGNALED | PW_SEND_INLINE;
	wr.wr.rdma.remote_addr = pwt_va(dst.buf.addr + 10);
	wr.wr.rdma.rkey = dst.buf.rkey;
	PWT_OK(pw_post_send(p.a.qp, &wr, &bad));
	memset(stackbuf, 0xee, sizeof(stackbuf));

	/* The largest inline message, one SGE. */
	pwt_fill(stackbuf, sizeof(stackbuf), 29);
	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 0x1031, stackbuf,
			     PW_MAX_INLINE_DATA, 0, pwt_va(dst.buf.addr + 4096),
			     dst.buf.rkey, PW_SEND_SIGNALED | PW_SEND_INLINE));
	memcpy(dst.want + 4096, stackbuf, PW_MAX_INLINE_DATA);
	memset(stackbuf, 0xdd, sizeof(stackbuf));

	PWT_EXPECT_OK(p.a.scq, 0x1030, PW_WC_RDMA_WRITE, 1000, p.a.qp->qp_num);
	PWT_EXPECT_OK(p.a.scq, 0x1031, PW_WC_RDMA_WRITE, PW_MAX_INLINE_DATA,
		      p.a.qp->qp_num);
	memcpy(dst.want + 10, orig, 1000);
	PWT_IMG_CHECK(&dst);
	pwt_img_free(&dst);
	pwt_pair_close(&p);
}

static void t_send_inline(const char *arg)
{
	struct pwt_pair_opts o = inline_opts();
	uint8_t stackbuf[1000], orig[1000];
	struct pw_sge sge[3] = {
		{ pwt_va(stackbuf), 1, 0 },
		{ pwt_va(stackbuf + 1), 998, 0 },
		{ pwt_va(stackbuf + 999), 1, 0 },
	};
	struct pw_send_wr wr, *bad = NULL;
	struct pwt_pair p;
	struct pwt_img rb;

	(void)arg;
	pwt_pair_open(&p, &o);
	pwt_img_alloc(&rb, &p.b, 4096, PWT_PINNED, 30);
	PWT_OK(pwt_post_recv1(p.b.qp, 0x2030, rb.buf.addr + 50, 2000, rb.buf.lkey));

	pwt_fill(stackbuf, sizeof(stackbuf), 31);
	memcpy(orig, stackbuf, sizeof(orig));
	memset(&wr, 0, sizeof(wr));
	wr.wr_id = 0x1032;
	wr.sg_list = sge;
	wr.num_sge = 3;
	wr.opcode = PW_WR_SEND_WITH_IMM;
	wr.imm_data = 0xa5a5a5a5;
	wr.send_flags = PW_SEND_SIGNALED | PW_SEND_INLINE;
	PWT_OK(pw_post_send(p.a.qp, &wr, &bad));
	memset(stackbuf, 0xee, sizeof(stackbuf));

	PWT_EXPECT_RECV(p.b.rcq, 0x2030, PW_WC_RECV, 1000, true, 0xa5a5a5a5,
			p.b.qp->qp_num);
	PWT_EXPECT_OK(p.a.scq, 0x1032, PW_WC_SEND, 1000, p.a.qp->qp_num);
	memcpy(rb.want + 50, orig, 1000);
	PWT_IMG_CHECK(&rb);
	pwt_img_free(&rb);
	pwt_pair_close(&p);
}

/* Unsignaled WRs complete silently; the signaled one after them reports. */
static void t_unsignaled(const char *arg)
{
	struct pwt_pair p;
	struct pwt_img src, dst;

	(void)arg;
	pwt_pair_open(&p, NULL);
	pwt_img_alloc_src(&src, &p.a, 8 * 4096, PWT_PINNED, 32);
	pwt_img_alloc(&dst, &p.b, 8 * 4096, PWT_PINNED, 33);
	for (int i = 0; i < 8; i++) {
		size_t off = (size_t)i * 4096 + (size_t)i;

		PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 0x1040u + (unsigned int)i,
				     src.buf.addr + off, 1000, src.buf.lkey,
				     pwt_va(dst.buf.addr + off), dst.buf.rkey,
				     i == 7 ? PW_SEND_SIGNALED : 0));
		memcpy(dst.want + off, src.want + off, 1000);
	}
	PWT_EXPECT_OK(p.a.scq, 0x1047, PW_WC_RDMA_WRITE, 1000, p.a.qp->qp_num);
	PWT_IMG_CHECK(&dst);
	PWT_NO_WC(p.a.scq, 200);
	pwt_img_free(&src);
	pwt_img_free(&dst);
	pwt_pair_close(&p);
}

/* sq_sig_all: every WR completes, even without PW_SEND_SIGNALED. */
static void t_sig_all(const char *arg)
{
	struct pwt_pair_opts o;
	struct pwt_pair p;
	struct pwt_img src, dst;

	(void)arg;
	memset(&o, 0, sizeof(o));
	o.a_attr.sq_sig_all = 1;
	pwt_pair_open(&p, &o);
	pwt_img_alloc_src(&src, &p.a, 4096, PWT_PINNED, 34);
	pwt_img_alloc(&dst, &p.b, 4096, PWT_PINNED, 35);
	for (unsigned int i = 0; i < 4; i++)
		PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 0x1050u + i,
				     src.buf.addr + i * 1024, 1024, src.buf.lkey,
				     pwt_va(dst.buf.addr + i * 1024), dst.buf.rkey, 0));
	for (unsigned int i = 0; i < 4; i++)
		PWT_EXPECT_OK(p.a.scq, 0x1050u + i, PW_WC_RDMA_WRITE, 1024,
			      p.a.qp->qp_num);
	memcpy(dst.want, src.want, 4096);
	PWT_IMG_CHECK(&dst);
	PWT_NO_WC(p.a.scq, 50);
	pwt_img_free(&src);
	pwt_img_free(&dst);
	pwt_pair_close(&p);
}

/*
 * One pw_post_send() with a linked list of every kind of WR. They execute
 * and complete in posting order.
 */
static void t_wr_chain(const char *arg)
{
	struct pwt_pair p;
	struct pwt_img loc, rem, rb;
	struct pw_sge sge[6];
	struct pw_send_wr wr[6], *bad = NULL;
	uint64_t v, orig = 40;

	(void)arg;
	pwt_pair_open(&p, NULL);
	pwt_img_alloc_src(&loc, &p.a, 16384, PWT_PINNED, 36);
	pwt_img_alloc(&rem, &p.b, 16384, PWT_PINNED, 37);
	pwt_img_alloc(&rb, &p.b, 4096, PWT_PINNED, 38);
	memcpy(rem.buf.addr + 8192, &orig, 8);
	PWT_OK(pwt_post_recv1(p.b.qp, 0x2040, rb.buf.addr, 4096, rb.buf.lkey));
	PWT_OK(pwt_post_recv1(p.b.qp, 0x2041, NULL, 0, 0));

	memset(wr, 0, sizeof(wr));
	/* 0: WRITE loc[0..1000) -> rem[0..1000) */
	sge[0] = (struct pw_sge){ pwt_va(loc.buf.addr), 1000, loc.buf.lkey };
	wr[0].opcode = PW_WR_RDMA_WRITE;
	wr[0].wr.rdma.remote_addr = pwt_va(rem.buf.addr);
	/* 1: READ rem[0..1000) -> loc[4096..5096): sees WR 0's data */
	sge[1] = (struct pw_sge){ pwt_va(loc.buf.addr + 4096), 1000, loc.buf.lkey };
	wr[1].opcode = PW_WR_RDMA_READ;
	wr[1].wr.rdma.remote_addr = pwt_va(rem.buf.addr);
	/* 2: FETCH_ADD 2 on rem[8192] -> loc[8192] */
	sge[2] = (struct pw_sge){ pwt_va(loc.buf.addr + 8192), 8, loc.buf.lkey };
	wr[2].opcode = PW_WR_ATOMIC_FETCH_AND_ADD;
	wr[2].wr.atomic.remote_addr = pwt_va(rem.buf.addr + 8192);
	wr[2].wr.atomic.compare_add = 2;
	/* 3: CMP_SWP 42 -> 7 on rem[8192] -> loc[8200]: sees WR 2's add */
	sge[3] = (struct pw_sge){ pwt_va(loc.buf.addr + 8200), 8, loc.buf.lkey };
	wr[3].opcode = PW_WR_ATOMIC_CMP_AND_SWP;
	wr[3].wr.atomic.remote_addr = pwt_va(rem.buf.addr + 8192);
	wr[3].wr.atomic.compare_add = 42;
	wr[3].wr.atomic.swap = 7;
	/* 4: SEND loc[12288..12788) */
	sge[4] = (struct pw_sge){ pwt_va(loc.buf.addr + 12288), 500, loc.buf.lkey };
	wr[4].opcode = PW_WR_SEND;
	/* 5: WRITE_WITH_IMM loc[2000..2100) -> rem[2000..2100) */
	sge[5] = (struct pw_sge){ pwt_va(loc.buf.addr + 2000), 100, loc.buf.lkey };
	wr[5].opcode = PW_WR_RDMA_WRITE_WITH_IMM;
	wr[5].imm_data = 77;
	wr[5].wr.rdma.remote_addr = pwt_va(rem.buf.addr + 2000);
	for (int i = 0; i < 6; i++) {
		wr[i].wr_id = 0x1060u + (unsigned int)i;
		wr[i].sg_list = &sge[i];
		wr[i].num_sge = 1;
		wr[i].send_flags = PW_SEND_SIGNALED;
		if (wr[i].opcode == PW_WR_ATOMIC_FETCH_AND_ADD ||
		    wr[i].opcode == PW_WR_ATOMIC_CMP_AND_SWP)
			wr[i].wr.atomic.rkey = rem.buf.rkey;
		else
			wr[i].wr.rdma.rkey = rem.buf.rkey;
		wr[i].next = i < 5 ? &wr[i + 1] : NULL;
	}
	PWT_OK(pw_post_send(p.a.qp, wr, &bad));

	PWT_EXPECT_OK(p.a.scq, 0x1060, PW_WC_RDMA_WRITE, 1000, p.a.qp->qp_num);
	PWT_EXPECT_OK(p.a.scq, 0x1061, PW_WC_RDMA_READ, 1000, p.a.qp->qp_num);
	PWT_EXPECT_OK(p.a.scq, 0x1062, PW_WC_FETCH_ADD, 8, p.a.qp->qp_num);
	PWT_EXPECT_OK(p.a.scq, 0x1063, PW_WC_COMP_SWAP, 8, p.a.qp->qp_num);
	PWT_EXPECT_OK(p.a.scq, 0x1064, PW_WC_SEND, 500, p.a.qp->qp_num);
	PWT_EXPECT_OK(p.a.scq, 0x1065, PW_WC_RDMA_WRITE, 100, p.a.qp->qp_num);
	PWT_EXPECT_RECV(p.b.rcq, 0x2040, PW_WC_RECV, 500, false, 0, p.b.qp->qp_num);
	PWT_EXPECT_RECV(p.b.rcq, 0x2041, PW_WC_RECV_RDMA_WITH_IMM, 100, true, 77,
			p.b.qp->qp_num);

	memcpy(rem.want, loc.want, 1000);
	memcpy(rem.want + 2000, loc.want + 2000, 100);
	v = 7;
	memcpy(rem.want + 8192, &v, 8);
	PWT_IMG_CHECK(&rem);
	memcpy(loc.want + 4096, loc.want, 1000);
	memcpy(loc.want + 8192, &orig, 8);
	v = orig + 2;
	memcpy(loc.want + 8200, &v, 8);
	PWT_IMG_CHECK(&loc);
	memcpy(rb.want, loc.want + 12288, 500);
	PWT_IMG_CHECK(&rb);

	pwt_img_free(&loc);
	pwt_img_free(&rem);
	pwt_img_free(&rb);
	pwt_pair_close(&p);
}

/*
 * Zero-length ops: they complete successfully with byte_len 0; zero-length
 * WRITE/READ skip the rkey check (IBA), so even a bogus key works.
 */
static void t_zero_length(const char *arg)
{
	struct pwt_pair p;
	struct pwt_img dst, rb;
	uint32_t bogus;

	(void)arg;
	pwt_pair_open(&p, NULL);
	pwt_img_alloc(&dst, &p.b, 4096, PWT_PINNED, 39);
	pwt_img_alloc(&rb, &p.b, 4096, PWT_PINNED, 40);
	bogus = dst.buf.rkey ^ 0x5a5a5a5au;
	PWT_ASSERT(bogus != rb.buf.rkey);
	PWT_OK(pwt_post_recv1(p.b.qp, 0x2050, rb.buf.addr, 4096, rb.buf.lkey));
	PWT_OK(pwt_post_recv1(p.b.qp, 0x2051, rb.buf.addr, 4096, rb.buf.lkey));

	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 0x1070, NULL, 0, 0,
			     pwt_va(dst.buf.addr + 10), dst.buf.rkey,
			     PW_SEND_SIGNALED));
	PWT_EXPECT_OK(p.a.scq, 0x1070, PW_WC_RDMA_WRITE, 0, p.a.qp->qp_num);
	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 0x1071, NULL, 0, 0,
			     0xdead0000, bogus, PW_SEND_SIGNALED));
	PWT_EXPECT_OK(p.a.scq, 0x1071, PW_WC_RDMA_WRITE, 0, p.a.qp->qp_num);
	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_READ, 0x1072, NULL, 0, 0,
			     0xdead0000, bogus, PW_SEND_SIGNALED));
	PWT_EXPECT_OK(p.a.scq, 0x1072, PW_WC_RDMA_READ, 0, p.a.qp->qp_num);
	PWT_OK(pwt_post_send1(p.a.qp, PW_WR_SEND, 0x1073, NULL, 0, 0, 0,
			      PW_SEND_SIGNALED));
	PWT_EXPECT_RECV(p.b.rcq, 0x2050, PW_WC_RECV, 0, false, 0, p.b.qp->qp_num);
	PWT_EXPECT_OK(p.a.scq, 0x1073, PW_WC_SEND, 0, p.a.qp->qp_num);
	{
		struct pw_send_wr wr, *bad = NULL;

		memset(&wr, 0, sizeof(wr));
		wr.wr_id = 0x1074;
		wr.opcode = PW_WR_RDMA_WRITE_WITH_IMM;
		wr.send_flags = PW_SEND_SIGNALED;
		wr.imm_data = 0xabc;
		wr.wr.rdma.remote_addr = 0xdead0000;
		wr.wr.rdma.rkey = bogus;
		PWT_OK(pw_post_send(p.a.qp, &wr, &bad));
	}
	PWT_EXPECT_RECV(p.b.rcq, 0x2051, PW_WC_RECV_RDMA_WITH_IMM, 0, true, 0xabc,
			p.b.qp->qp_num);
	PWT_EXPECT_OK(p.a.scq, 0x1074, PW_WC_RDMA_WRITE, 0, p.a.qp->qp_num);

	PWT_IMG_CHECK(&dst);
	PWT_IMG_CHECK(&rb);
	PWT_EQ(pw_qp_state(p.a.qp), PW_QPS_RTS);
	PWT_EQ(pw_qp_state(p.b.qp), PW_QPS_RTS);
	pwt_img_free(&dst);
	pwt_img_free(&rb);
	pwt_pair_close(&p);
}

/* ------------------------------------------------------------------ */
/* Many ops in flight, ordering                                         */
/* ------------------------------------------------------------------ */

#define NSMALL 10000
#define SIG_EVERY 64

/* Next signaled completion must be @want (completions come in order). */
static void small_reap(struct pwt_pair *p, uint64_t *next_sig)
{
	PWT_EXPECT_OK(p->a.scq, *next_sig, PW_WC_RDMA_WRITE, 8, p->a.qp->qp_num);
	*next_sig += SIG_EVERY;
}

/*
 * 10k 8-byte writes, mostly unsignaled, then a SEND: when the SEND's
 * receive completes, every write before it must already be visible.
 */
static void t_many_small(const char *arg)
{
	struct pwt_pair_opts o;
	struct pwt_pair p;
	struct pwt_img src, dst, rb;
	uint64_t next_sig = SIG_EVERY - 1;
	uint64_t *s;

	(void)arg;
	memset(&o, 0, sizeof(o));
	o.a_attr.cap.max_send_wr = 1024;
	pwt_pair_open(&p, &o);
	pwt_img_alloc(&src, &p.a, NSMALL * 8, PWT_PINNED, 0);
	pwt_img_alloc(&dst, &p.b, NSMALL * 8, PWT_PINNED, 41);
	pwt_img_alloc(&rb, &p.b, 64, PWT_PINNED, 42);
	s = (uint64_t *)(void *)src.buf.addr;
	for (uint64_t i = 0; i < NSMALL; i++)
		s[i] = 0x5eed000000000000ull ^ (i * 2654435761ull);
	memcpy(dst.want, src.buf.addr, NSMALL * 8);
	PWT_OK(pwt_post_recv1(p.b.qp, 0x2060, rb.buf.addr, 64, rb.buf.lkey));

	for (uint64_t i = 0; i < NSMALL; i++) {
		unsigned int fl = (i % SIG_EVERY) == SIG_EVERY - 1 ? PW_SEND_SIGNALED : 0;
		int rc;

		while ((rc = pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, i, &s[i], 8,
					   src.buf.lkey, pwt_va(dst.buf.addr + i * 8),
					   dst.buf.rkey, fl)) == -ENOMEM)
			small_reap(&p, &next_sig);
		PWT_OK(rc);
	}
	PWT_OK(pwt_post_send1(p.a.qp, PW_WR_SEND, 0xfeed, &s[0], 8, src.buf.lkey,
			      0, PW_SEND_SIGNALED));
	PWT_EXPECT_RECV(p.b.rcq, 0x2060, PW_WC_RECV, 8, false, 0, p.b.qp->qp_num);
	/* Checked before the sender sees its completions: RC ordering. */
	PWT_IMG_CHECK(&dst);
	while (next_sig < NSMALL)
		small_reap(&p, &next_sig);
	PWT_EXPECT_OK(p.a.scq, 0xfeed, PW_WC_SEND, 8, p.a.qp->qp_num);
	PWT_NO_WC(p.a.scq, 0);
	memcpy(rb.want, s, 8);
	PWT_IMG_CHECK(&rb);

	pwt_img_free(&src);
	pwt_img_free(&dst);
	pwt_img_free(&rb);
	pwt_pair_close(&p);
}

/*
 * Two QPs hammer one counter with FETCH_ADD. Atomicity: the final value
 * is the number of adds and the returned originals are exactly 0..N-1.
 */
static void t_atomic_many(const char *arg)
{
	enum { PER_QP = 500, BATCH = 50 };
	struct pwt_pair p;
	struct pw_qp *qa2, *qb2, *qps[2];
	struct pwt_img res, ctr;
	uint64_t v;
	uint8_t *seen;

	(void)arg;
	pwt_pair_open(&p, NULL);
	pwt_connect_qp(&p.a, &p.b, p.l, NULL, NULL, &qa2, &qb2);
	qps[0] = p.a.qp;
	qps[1] = qa2;
	pwt_img_alloc(&res, &p.a, 2 * PER_QP * 8, PWT_PINNED, 0);
	pwt_img_alloc(&ctr, &p.b, 4096, PWT_PINNED, 0);

	for (int b = 0; b < PER_QP / BATCH; b++) {
		int seen_qp[2] = { 0, 0 };

		for (int i = 0; i < BATCH; i++)
			for (int q = 0; q < 2; q++) {
				uint64_t slot = (uint64_t)q * PER_QP + (uint64_t)b * BATCH + (uint64_t)i;

				PWT_OK(pwt_post_atomic(qps[q], PW_WR_ATOMIC_FETCH_AND_ADD, slot,
						       (uint64_t *)(void *)res.buf.addr + slot,
						       res.buf.lkey, pwt_va(ctr.buf.addr + 64),
						       ctr.buf.rkey, 1, 0, PW_SEND_SIGNALED));
			}
		for (int i = 0; i < 2 * BATCH; i++) {
			struct pw_wc wc;
			int q;

			PWT_WAIT_WC(p.a.scq, &wc);
			PWT_ASSERTF(wc.status == PW_WC_SUCCESS, "status %s",
				    pw_wc_status_str(wc.status));
			q = wc.qp_num == qa2->qp_num;
			PWT_EQ(wc.qp_num, qps[q]->qp_num);
			/* In order within each QP. */
			PWT_EQ(wc.wr_id, (uint64_t)q * PER_QP + (uint64_t)b * BATCH +
					 (uint64_t)seen_qp[q]);
			PWT_EQ(wc.opcode, PW_WC_FETCH_ADD);
			PWT_EQ(wc.byte_len, 8);
			seen_qp[q]++;
		}
	}
	memcpy(&v, ctr.buf.addr + 64, 8);
	PWT_EQ(v, 2 * PER_QP);
	seen = calloc(2 * PER_QP, 1);
	PWT_ASSERT(seen);
	for (int i = 0; i < 2 * PER_QP; i++) {
		memcpy(&v, res.buf.addr + (size_t)i * 8, 8);
		PWT_ASSERTF(v < 2 * PER_QP && !seen[v],
			    "FETCH_ADD result %" PRIu64 " out of range or seen twice", v);
		seen[v] = 1;
	}
	free(seen);
	PWT_OK(pw_destroy_qp(qa2));
	PWT_OK(pw_destroy_qp(qb2));
	pwt_img_free(&res);
	pwt_img_free(&ctr);
	pwt_pair_close(&p);
}

/* A READ posted after a WRITE to the same range sees the written data. */
static void t_read_after_write(const char *arg)
{
	struct pwt_pair p;
	struct pwt_img src, rem, sink;

	(void)arg;
	pwt_pair_open(&p, NULL);
	pwt_img_alloc_src(&src, &p.a, 65536, PWT_PINNED, 43);
	pwt_img_alloc(&rem, &p.b, 65536, PWT_PINNED, 44);
	pwt_img_alloc(&sink, &p.a, 65536, PWT_PINNED, 45);
	for (unsigned int round = 0; round < 20; round++) {
		size_t off = round * 3000;

		PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 0x1080 + round,
				     src.buf.addr + off, 5000, src.buf.lkey,
				     pwt_va(rem.buf.addr + off), rem.buf.rkey, 0));
		PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_READ, 0x1100 + round,
				     sink.buf.addr + off, 5000, sink.buf.lkey,
				     pwt_va(rem.buf.addr + off), rem.buf.rkey,
				     PW_SEND_SIGNALED));
		memcpy(rem.want + off, src.want + off, 5000);
		memcpy(sink.want + off, src.want + off, 5000);
	}
	for (unsigned int round = 0; round < 20; round++)
		PWT_EXPECT_OK(p.a.scq, 0x1100 + round, PW_WC_RDMA_READ, 5000,
			      p.a.qp->qp_num);
	PWT_IMG_CHECK(&rem);
	PWT_IMG_CHECK(&sink);
	pwt_img_free(&src);
	pwt_img_free(&rem);
	pwt_img_free(&sink);
	pwt_pair_close(&p);
}

/* Four QPs between the same contexts move data concurrently. */
static void t_multi_qp(const char *arg)
{
	enum { NQ = 4, CH = 1 << 20 };
	struct pwt_pair p;
	struct pw_qp *qa[NQ], *qb[NQ];
	struct pwt_img src, rem, sink;
	int nwrite = 0, nread = 0;

	(void)arg;
	pwt_pair_open(&p, NULL);
	qa[0] = p.a.qp;
	qb[0] = p.b.qp;
	for (int q = 1; q < NQ; q++)
		pwt_connect_qp(&p.a, &p.b, p.l, NULL, NULL, &qa[q], &qb[q]);
	pwt_img_alloc_src(&src, &p.a, NQ * CH, PWT_PINNED, 46);
	pwt_img_alloc(&rem, &p.b, NQ * CH, PWT_ODP, 0);
	pwt_img_alloc(&sink, &p.a, NQ * CH, PWT_PINNED, 47);
	for (int q = 0; q < NQ; q++) {
		size_t off = (size_t)q * CH;

		PWT_OK(pwt_post_rdma(qa[q], PW_WR_RDMA_WRITE, 0x1200u + (unsigned int)q,
				     src.buf.addr + off, CH, src.buf.lkey,
				     pwt_va(rem.buf.addr + off), rem.buf.rkey,
				     PW_SEND_SIGNALED));
		PWT_OK(pwt_post_rdma(qa[q], PW_WR_RDMA_READ, 0x1300u + (unsigned int)q,
				     sink.buf.addr + off, CH, sink.buf.lkey,
				     pwt_va(rem.buf.addr + off), rem.buf.rkey,
				     PW_SEND_SIGNALED));
	}
	for (int i = 0; i < 2 * NQ; i++) {
		struct pw_wc wc;
		int q = -1;

		PWT_WAIT_WC(p.a.scq, &wc);
		PWT_ASSERTF(wc.status == PW_WC_SUCCESS, "wr_id 0x%" PRIx64 " status %s",
			    wc.wr_id, pw_wc_status_str(wc.status));
		for (int k = 0; k < NQ; k++)
			if (qa[k]->qp_num == wc.qp_num)
				q = k;
		PWT_ASSERT(q >= 0);
		PWT_EQ(wc.byte_len, CH);
		if (wc.opcode == PW_WC_RDMA_WRITE) {
			PWT_EQ(wc.wr_id, 0x1200u + (unsigned int)q);
			nwrite++;
		} else {
			PWT_EQ(wc.opcode, PW_WC_RDMA_READ);
			PWT_EQ(wc.wr_id, 0x1300u + (unsigned int)q);
			nread++;
		}
	}
	PWT_EQ(nwrite, NQ);
	PWT_EQ(nread, NQ);
	memcpy(rem.want, src.want, NQ * CH);
	memcpy(sink.want, src.want, NQ * CH);
	PWT_IMG_CHECK(&rem);
	PWT_IMG_CHECK(&sink);
	for (int q = 1; q < NQ; q++) {
		PWT_OK(pw_destroy_qp(qa[q]));
		PWT_OK(pw_destroy_qp(qb[q]));
	}
	pwt_img_free(&src);
	pwt_img_free(&rem);
	pwt_img_free(&sink);
	pwt_pair_close(&p);
}

/* WRITE and READ for every combination of local and remote MR mode. */
static void t_mixed_modes(const char *arg)
{
	struct pwt_pair p;

	(void)arg;
	pwt_pair_open(&p, NULL);
	for (int ma = PWT_PINNED; ma <= PWT_IMPLICIT; ma++)
		for (int mb = PWT_PINNED; mb <= PWT_IMPLICIT; mb++) {
			struct pwt_img src, rem, sink;
			uint64_t id = (uint64_t)(ma * 3 + mb) << 8;

			pwt_img_alloc_src(&src, &p.a, 20000, (enum pwt_mode)ma,
				      50 + (uint32_t)ma);
			pwt_img_alloc(&rem, &p.b, 30000, (enum pwt_mode)mb,
				  53 + (uint32_t)mb);
			pwt_img_alloc(&sink, &p.a, 20000, (enum pwt_mode)ma, 0);
			PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, id | 1,
					     src.buf.addr, 20000, src.buf.lkey,
					     pwt_va(rem.buf.addr + 333), rem.buf.rkey,
					     PW_SEND_SIGNALED));
			PWT_EXPECT_OK(p.a.scq, id | 1, PW_WC_RDMA_WRITE, 20000,
				      p.a.qp->qp_num);
			PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_READ, id | 2,
					     sink.buf.addr, 20000, sink.buf.lkey,
					     pwt_va(rem.buf.addr + 333), rem.buf.rkey,
					     PW_SEND_SIGNALED));
			PWT_EXPECT_OK(p.a.scq, id | 2, PW_WC_RDMA_READ, 20000,
				      p.a.qp->qp_num);
			memcpy(rem.want + 333, src.want, 20000);
			memcpy(sink.want, src.want, 20000);
			PWT_IMG_CHECK(&rem);
			PWT_IMG_CHECK(&sink);
			pwt_img_free(&src);
			pwt_img_free(&rem);
			pwt_img_free(&sink);
		}
	pwt_pair_close(&p);
}

/*
 * PW_CONTEXT_BUSY_POLL on both sides: pw_open() takes the flag, and a SEND
 * ping-pong of inline and non-inline sizes, polled from one thread that
 * so drives both contexts' engines, delivers every byte and every
 * completion exactly. Who ran the pass (this thread or the progress
 * thread) is not visible through the API; the latency it buys is measured
 * by benchmarks, not here.
 */
static void t_busy_poll(const char *arg)
{
	enum pwt_mode m = pwt_parse_mode(arg);
	static const uint32_t sizes[] = { 8, 200, 4096, 65536 };
	struct pwt_pair_opts o;
	struct pwt_pair p;
	struct pwt_buf atx, arx, btx, brx;

	memset(&o, 0, sizeof(o));
	o.a_ctx.flags = PW_CONTEXT_BUSY_POLL;
	o.b_ctx.flags = PW_CONTEXT_BUSY_POLL;
	o.a_attr.cap.max_inline_data = 256;
	o.b_attr.cap.max_inline_data = 256;
	pwt_pair_open(&p, &o);
	pwt_buf_alloc(&atx, &p.a, 65536, PWT_ACCESS_ALL, m);
	pwt_buf_alloc(&arx, &p.a, 65536, PWT_ACCESS_ALL, m);
	pwt_buf_alloc(&btx, &p.b, 65536, PWT_ACCESS_ALL, m);
	pwt_buf_alloc(&brx, &p.b, 65536, PWT_ACCESS_ALL, m);
	for (unsigned int i = 0; i < 200; i++) {
		uint32_t len = sizes[i % PWT_ARRAY_SIZE(sizes)];
		unsigned int fl = PW_SEND_SIGNALED | (len <= 256 ? PW_SEND_INLINE : 0);

		PWT_OK(pwt_post_recv1(p.b.qp, 2 * i, brx.addr, 65536, brx.lkey));
		PWT_OK(pwt_post_recv1(p.a.qp, 2 * i + 1, arx.addr, 65536, arx.lkey));
		pwt_fill(atx.addr, len, i + 1);
		PWT_OK(pwt_post_send1(p.a.qp, PW_WR_SEND, 100000 + i, atx.addr, len,
				      atx.lkey, 0, fl));
		PWT_EXPECT_OK(p.b.rcq, 2 * i, PW_WC_RECV, len, p.b.qp->qp_num);
		PWT_PATTERN(brx.addr, len, i + 1, 0);
		/* the pong carries the ping back */
		memcpy(btx.addr, brx.addr, len);
		PWT_OK(pwt_post_send1(p.b.qp, PW_WR_SEND, 200000 + i, btx.addr, len,
				      btx.lkey, 0, fl));
		PWT_EXPECT_OK(p.a.rcq, 2 * i + 1, PW_WC_RECV, len, p.a.qp->qp_num);
		PWT_PATTERN(arx.addr, len, i + 1, 0);
		PWT_EXPECT_OK(p.a.scq, 100000 + i, PW_WC_SEND, len, p.a.qp->qp_num);
		PWT_EXPECT_OK(p.b.scq, 200000 + i, PW_WC_SEND, len, p.b.qp->qp_num);
	}
	PWT_NO_WC(p.a.scq, 20);
	pwt_buf_free(&atx);
	pwt_buf_free(&arx);
	pwt_buf_free(&btx);
	pwt_buf_free(&brx);
	pwt_pair_close(&p);
}

static const struct pwt_case cases[] = {
	{ "write", t_write },
	{ "write_imm", t_write_imm },
	{ "read", t_read },
	{ "send", t_send },
	{ "send_imm", t_send_imm },
	{ "fetch_add", t_fetch_add },
	{ "cmp_swap", t_cmp_swap },
	{ "cmp_swap_fail", t_cmp_swap_fail },
	{ "write_sge", t_write_sge },
	{ "read_sge", t_read_sge },
	{ "send_sge", t_send_sge },
	{ "large_write", t_large_write },
	{ "large_read", t_large_read },
	{ "write_inline", t_write_inline },
	{ "send_inline", t_send_inline },
	{ "unsignaled", t_unsignaled },
	{ "sig_all", t_sig_all },
	{ "wr_chain", t_wr_chain },
	{ "zero_length", t_zero_length },
	{ "many_small", t_many_small },
	{ "atomic_many", t_atomic_many },
	{ "read_after_write", t_read_after_write },
	{ "multi_qp", t_multi_qp },
	{ "mixed_modes", t_mixed_modes },
	{ "busy_poll", t_busy_poll },
};

int main(int argc, char **argv)
{
	return pwt_main(argc, argv, cases, PWT_ARRAY_SIZE(cases));
}
