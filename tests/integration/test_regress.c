/* SPDX-License-Identifier: MIT */
/*
 * Regression tests for bugs a review found with standalone reproducers:
 * VM events under ODP MRs (a receive buffer or SEND source unmapped), MRs
 * deregistered while data lands in them, receives larger than 2^31, and
 * QPs destroyed with responses or ACKs still owed. docs/semantics.md is
 * the reference for every status checked here.
 *
 * The timing-dependent scenarios (a deregistration or a destroy in the
 * middle of a big transfer) check that the scenario really happened and
 * retry with a bigger transfer when it did not; they never pass vacuously.
 */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pwtest.h"

#define ERR_WR_ID	0xe1u
#define RECV_ID0	0xb0u
/* Every byte of the big sources: nonzero, so a late byte always shows. */
#define FILL_BYTE	0x5a
/* Completions of transfers of up to 1 GiB, under sanitizers too. */
#define BIG_TIMEOUT_MS	40000

static size_t page_size(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

/* The next completion on @cq, within @ms, has @wr_id and @status. */
#define EXPECT_ERR_WITHIN(cq, wr_id, status, qp_num, ms)		\
	expect_err_within_at(__FILE__, __LINE__, (cq), (wr_id), (status), \
			     (qp_num), (ms))
static void expect_err_within_at(const char *file, int line, struct pw_cq *cq,
				 uint64_t wr_id, enum pw_wc_status status,
				 uint32_t qp_num, int ms)
{
	struct pw_wc wc;

	pwt_wait_wc_at(file, line, cq, &wc, ms);
	if (wc.wr_id != wr_id || wc.status != status || wc.qp_num != qp_num)
		pwt_fail(file, line,
			 "completion: want wr_id 0x%" PRIx64 " status %s qp %u, got wr_id 0x%"
			 PRIx64 " status %s qp %u (vendor_err %u)",
			 wr_id, pw_wc_status_str(status), qp_num, wc.wr_id,
			 pw_wc_status_str(wc.status), wc.qp_num, wc.vendor_err);
}

static void expect_quiet(struct pwt_side *s)
{
	PWT_NO_WC(s->scq, 0);
	PWT_NO_WC(s->rcq, 0);
}

/*
 * The hole a test unmapped must still be a hole when the test checks its
 * outcome: had something else been mapped there, the test would not have
 * shown what it claims (msync fails with ENOMEM on unmapped ranges).
 */
static void expect_still_unmapped(const void *p, size_t len)
{
	int rc = msync((void *)(uintptr_t)p, len, MS_ASYNC);

	PWT_ASSERTF(rc == -1 && errno == ENOMEM,
		    "the unmapped range %p+%zu got mapped again during the test "
		    "(msync: %d, errno %d): scenario not reproduced", p, len, rc,
		    rc ? errno : 0);
}

/* Waits until the byte at @p is nonzero. */
static uint8_t peek_u8(const uint8_t *p)
{
	uint8_t v = 0;

	PWT_ASSERT(pwt_peek(&v, p, 1));
	return v;
}

/* Sample a byte a transfer in flight writes (pwt_peek: a deliberate race). */
static void wait_nonzero(const uint8_t *p, int ms, const char *what)
{
	uint64_t deadline = pwt_now_ms() + (uint64_t)ms;
	unsigned int spins = 0;

	while (peek_u8(p) == 0) {
		if (++spins % 1024 == 0) {
			PWT_ASSERTF(pwt_now_ms() < deadline,
				    "%s: no byte arrived within %d ms", what, ms);
			sched_yield();
		}
	}
}

/* Destroys both QPs of @p: after this no op of theirs touches memory. */
static void destroy_qps(struct pwt_pair *p)
{
	if (p->a.qp)
		PWT_OK(pw_destroy_qp(p->a.qp));
	p->a.qp = NULL;
	if (p->b.qp)
		PWT_OK(pw_destroy_qp(p->b.qp));
	p->b.qp = NULL;
}

/* Number of nonzero bytes in [p, p + len) and the offset of the first. */
static size_t count_nonzero(const uint8_t *p, size_t len, size_t *first)
{
	const size_t chunk = 64 * PWT_KIB;
	static const uint8_t zero[64 * 1024];
	size_t n = 0;

	*first = SIZE_MAX;
	for (size_t off = 0; off < len; off += chunk) {
		size_t l = len - off < chunk ? len - off : chunk;

		if (memcmp(p + off, zero, l) == 0)
			continue;
		for (size_t i = 0; i < l; i++) {
			if (!p[off + i])
				continue;
			if (*first == SIZE_MAX)
				*first = off + i;
			n++;
		}
	}
	return n;
}

/* Number of bytes in [p, p + len) that are neither @b1 nor @b2. */
static size_t count_other(const uint8_t *p, size_t len, uint8_t b1, uint8_t b2,
			  size_t *first)
{
	const size_t chunk = 64 * PWT_KIB;
	static uint8_t ref1[64 * 1024], ref2[64 * 1024];
	size_t n = 0;

	memset(ref1, b1, chunk);
	memset(ref2, b2, chunk);
	*first = SIZE_MAX;
	for (size_t off = 0; off < len; off += chunk) {
		size_t l = len - off < chunk ? len - off : chunk;

		if (memcmp(p + off, ref1, l) == 0 || memcmp(p + off, ref2, l) == 0)
			continue;
		for (size_t i = 0; i < l; i++) {
			if (p[off + i] == b1 || p[off + i] == b2)
				continue;
			if (*first == SIZE_MAX)
				*first = off + i;
			n++;
		}
	}
	return n;
}

/* ------------------------------------------------------------------ */
/* rep1: the receive buffer is unmapped                                 */
/* ------------------------------------------------------------------ */

/*
 * The receive buffer (ODP MR) is munmap'ed after registration, before the
 * receive is posted: an incoming SEND cannot be placed. The receive
 * completes with LOC_PROT_ERR, the sender gets REM_OP_ERR, both QPs end in
 * error and the receiver's next receive is flushed, its buffer untouched.
 */
static void t_recv_buf_unmapped(const char *arg)
{
	const size_t pg = page_size();
	struct pwt_pair p;
	struct pwt_img src, good;
	struct pw_mr *rmr;
	uint8_t *rbuf;

	(void)arg;
	pwt_pair_open(&p, NULL);
	pwt_img_alloc_src(&src, &p.a, pg, PWT_ODP, 101);
	pwt_img_alloc_src(&good, &p.b, pg, PWT_ODP, 102);
	rbuf = pwt_map(2 * pg);
	rmr = pw_reg_mr(p.b.pd, rbuf, 2 * pg,
			PW_ACCESS_LOCAL_WRITE | PW_ACCESS_ON_DEMAND);
	PWT_NONNULL(rmr);
	pwt_unmap(rbuf, 2 * pg);

	PWT_OK(pwt_post_recv1(p.b.qp, RECV_ID0, rbuf, (uint32_t)(2 * pg), rmr->lkey));
	PWT_OK(pwt_post_recv1(p.b.qp, RECV_ID0 + 1, good.buf.addr, (uint32_t)pg,
			      good.buf.lkey));
	PWT_OK(pwt_post_send1(p.a.qp, PW_WR_SEND, ERR_WR_ID, src.buf.addr,
			      (uint32_t)pg, src.buf.lkey, 0, PW_SEND_SIGNALED));

	PWT_EXPECT_ERR(p.b.rcq, RECV_ID0, PW_WC_LOC_PROT_ERR, p.b.qp->qp_num);
	PWT_EXPECT_ERR(p.b.rcq, RECV_ID0 + 1, PW_WC_WR_FLUSH_ERR, p.b.qp->qp_num);
	PWT_EXPECT_ERR(p.a.scq, ERR_WR_ID, PW_WC_REM_OP_ERR, p.a.qp->qp_num);
	PWT_WAIT_STATE(p.a.qp, PW_QPS_ERR);
	PWT_WAIT_STATE(p.b.qp, PW_QPS_ERR);
	expect_quiet(&p.a);
	expect_quiet(&p.b);
	PWT_IMG_CHECK(&good);
	PWT_IMG_CHECK(&src);
	expect_still_unmapped(rbuf, 2 * pg);

	PWT_OK(pw_dereg_mr(rmr));
	pwt_img_free(&src);
	pwt_img_free(&good);
	pwt_pair_close(&p);
}

/* ------------------------------------------------------------------ */
/* rep2: the source of a SEND / WRITE is unmapped                       */
/* ------------------------------------------------------------------ */

/*
 * The source (ODP MR, 2 pages) is munmap'ed before the WR is posted:
 * entirely, or only its second page ("tail": the first page goes out, then
 * the source faults mid-message). The initiator gets LOC_PROT_ERR; the
 * message must not complete at the target with made-up bytes (zeros): a
 * SEND's receive is flushed, never successful, and no byte where the
 * unmapped source would go changes at the target.
 */
static void src_unmapped(bool send, bool tail)
{
	const size_t pg = page_size();
	const uint32_t len = tail ? (uint32_t)(2 * pg) : 100;
	struct pwt_pair p;
	struct pwt_img dst, spare;
	struct pw_mr *smr;
	uint8_t *sbuf, *page0;
	uint8_t *hole;
	size_t hole_len;

	pwt_pair_open(&p, NULL);
	/* Nonzero initial content, so that zeros would show. */
	pwt_img_alloc_src(&dst, &p.b, 2 * pg, PWT_ODP, 111);
	pwt_img_alloc_src(&spare, &p.b, pg, PWT_ODP, 112);
	sbuf = pwt_map(2 * pg);
	pwt_fill(sbuf, 2 * pg, 113);
	page0 = malloc(pg);
	PWT_ASSERT(page0);
	memcpy(page0, sbuf, pg);
	smr = pw_reg_mr(p.a.pd, sbuf, 2 * pg,
			PW_ACCESS_LOCAL_WRITE | PW_ACCESS_ON_DEMAND);
	PWT_NONNULL(smr);
	hole = tail ? sbuf + pg : sbuf;
	hole_len = tail ? pg : 2 * pg;
	pwt_unmap(hole, hole_len);

	if (send) {
		PWT_OK(pwt_post_recv1(p.b.qp, RECV_ID0, dst.buf.addr,
				      (uint32_t)(2 * pg), dst.buf.lkey));
		PWT_OK(pwt_post_recv1(p.b.qp, RECV_ID0 + 1, spare.buf.addr,
				      (uint32_t)pg, spare.buf.lkey));
		PWT_OK(pwt_post_send1(p.a.qp, PW_WR_SEND, ERR_WR_ID, sbuf, len,
				      smr->lkey, 0, PW_SEND_SIGNALED));
	} else {
		PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, ERR_WR_ID, sbuf, len,
				     smr->lkey, pwt_va(dst.buf.addr),
				     dst.buf.rkey, PW_SEND_SIGNALED));
	}
	PWT_EXPECT_ERR(p.a.scq, ERR_WR_ID, PW_WC_LOC_PROT_ERR, p.a.qp->qp_num);
	PWT_WAIT_STATE(p.a.qp, PW_QPS_ERR);
	/* The target sees the stream cut inside the message. */
	PWT_WAIT_STATE(p.b.qp, PW_QPS_ERR);
	if (send) {
		PWT_EXPECT_ERR(p.b.rcq, RECV_ID0, PW_WC_WR_FLUSH_ERR, p.b.qp->qp_num);
		PWT_EXPECT_ERR(p.b.rcq, RECV_ID0 + 1, PW_WC_WR_FLUSH_ERR,
			       p.b.qp->qp_num);
	}
	expect_quiet(&p.a);
	expect_quiet(&p.b);

	if (tail) {
		/* Part of the mapped first page may have landed (a flushed
		 * receive's buffer is undefined, as a failed WRITE's target
		 * range): each byte is the source's or the original one. */
		for (size_t i = 0; i < pg; i++)
			PWT_ASSERTF(dst.buf.addr[i] == dst.want[i] ||
				    dst.buf.addr[i] == page0[i],
				    "target byte %zu is 0x%02x: neither the original "
				    "0x%02x nor the source's 0x%02x", i,
				    dst.buf.addr[i], dst.want[i], page0[i]);
		/* Where the unmapped page would go: unchanged, no zeros. */
		PWT_MEMEQ(dst.buf.addr + pg, dst.want + pg, pg);
	} else {
		PWT_IMG_CHECK(&dst);
	}
	PWT_IMG_CHECK(&spare);
	expect_still_unmapped(hole, hole_len);

	PWT_OK(pw_dereg_mr(smr));
	if (tail)
		pwt_unmap(sbuf, pg);
	free(page0);
	pwt_img_free(&dst);
	pwt_img_free(&spare);
	pwt_pair_close(&p);
}

static void t_send_src_unmapped(const char *arg)
{
	(void)arg;
	src_unmapped(true, false);
}

static void t_send_src_unmapped_tail(const char *arg)
{
	(void)arg;
	src_unmapped(true, true);
}

static void t_write_src_unmapped(const char *arg)
{
	(void)arg;
	src_unmapped(false, false);
}

static void t_write_src_unmapped_tail(const char *arg)
{
	(void)arg;
	src_unmapped(false, true);
}

/* ------------------------------------------------------------------ */
/* rep3: the local destination MR is deregistered mid-transfer          */
/* ------------------------------------------------------------------ */

enum midway { MIDWAY_RECV, MIDWAY_SINK };

/*
 * One big SEND (into a receive) or READ (into a sink) whose destination
 * is an ODP MR of @len bytes. As soon as the first byte has landed the MR
 * is deregistered; the application then reuses the memory (zeroes it), and
 * no byte may land afterwards. Returns false when the scenario did not
 * happen: the whole message had landed by the time pw_dereg_mr returned.
 */
static bool dereg_midway_once(enum midway kind, size_t len)
{
	struct pwt_pair p;
	struct pwt_side *dside, *sside;
	struct pw_mr *smr, *dmr;
	uint8_t *src, *dst;
	uint64_t t0, t_dereg;
	size_t late, first;
	bool end_landed;

	pwt_pair_open(&p, NULL);
	/* SEND: a -> b, the receive at b. READ: a reads from b into a. */
	sside = kind == MIDWAY_RECV ? &p.a : &p.b;
	dside = kind == MIDWAY_RECV ? &p.b : &p.a;
	src = pwt_map(len);
	memset(src, FILL_BYTE, len);
	dst = pwt_map(len);
	smr = pw_reg_mr(sside->pd, src, len,
			PW_ACCESS_LOCAL_WRITE | PW_ACCESS_REMOTE_READ |
			PW_ACCESS_ON_DEMAND);
	PWT_NONNULL(smr);
	dmr = pw_reg_mr(dside->pd, dst, len,
			PW_ACCESS_LOCAL_WRITE | PW_ACCESS_ON_DEMAND);
	PWT_NONNULL(dmr);

	t0 = pwt_now_us();
	if (kind == MIDWAY_RECV) {
		PWT_OK(pwt_post_recv1(p.b.qp, RECV_ID0, dst, (uint32_t)len, dmr->lkey));
		PWT_OK(pwt_post_send1(p.a.qp, PW_WR_SEND, ERR_WR_ID, src,
				      (uint32_t)len, smr->lkey, 0, PW_SEND_SIGNALED));
	} else {
		PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_READ, ERR_WR_ID, dst,
				     (uint32_t)len, dmr->lkey, pwt_va(src), smr->rkey,
				     PW_SEND_SIGNALED));
	}
	wait_nonzero(dst, PWT_TIMEOUT_MS, "destination");
	PWT_OK(pw_dereg_mr(dmr));
	t_dereg = pwt_now_us() - t0;
	/* Placement is in order: the last byte tells whether all landed. */
	end_landed = ((const volatile uint8_t *)dst)[len - 1] != 0;
	/* The application reuses the memory at once. */
	memset(dst, 0, len);

	if (end_landed) {
		struct pw_wc wc;

		printf("%zu MiB: the whole message had landed when pw_dereg_mr "
		       "returned (%" PRIu64 " us after posting): too fast\n",
		       len / PWT_MIB, t_dereg);
		if (kind == MIDWAY_RECV)
			pwt_wait_wc_at(__FILE__, __LINE__, p.b.rcq, &wc, BIG_TIMEOUT_MS);
		pwt_wait_wc_at(__FILE__, __LINE__, p.a.scq, &wc, BIG_TIMEOUT_MS);
	} else {
		printf("%zu MiB: MR deregistered %" PRIu64 " us after posting, "
		       "mid-transfer\n", len / PWT_MIB, t_dereg);
		if (kind == MIDWAY_RECV) {
			EXPECT_ERR_WITHIN(p.b.rcq, RECV_ID0, PW_WC_LOC_PROT_ERR,
					  p.b.qp->qp_num, BIG_TIMEOUT_MS);
			EXPECT_ERR_WITHIN(p.a.scq, ERR_WR_ID, PW_WC_REM_OP_ERR,
					  p.a.qp->qp_num, BIG_TIMEOUT_MS);
			PWT_WAIT_STATE(p.b.qp, PW_QPS_ERR);
		} else {
			EXPECT_ERR_WITHIN(p.a.scq, ERR_WR_ID, PW_WC_LOC_PROT_ERR,
					  p.a.qp->qp_num, BIG_TIMEOUT_MS);
		}
		PWT_WAIT_STATE(p.a.qp, PW_QPS_ERR);
		expect_quiet(&p.a);
		expect_quiet(&p.b);
	}
	/* With both QPs gone nothing can land any more: check now. */
	destroy_qps(&p);
	if (!end_landed) {
		late = count_nonzero(dst, len, &first);
		PWT_ASSERTF(late == 0,
			    "%zu bytes landed after pw_dereg_mr returned, the first "
			    "at offset %zu of %zu", late, first, len);
	}

	PWT_OK(pw_dereg_mr(smr));
	pwt_unmap(src, len);
	pwt_unmap(dst, len);
	pwt_pair_close(&p);
	return !end_landed;
}

static void dereg_midway(enum midway kind)
{
	for (size_t len = 256 * PWT_MIB; len <= PWT_GIB; len *= 2)
		if (dereg_midway_once(kind, len))
			return;
	pwt_fail(__FILE__, __LINE__,
		 "even 1 GiB had fully landed before pw_dereg_mr returned: "
		 "the deregistration never happened mid-transfer, nothing was tested");
}

static void t_dereg_recv_midway(const char *arg)
{
	(void)arg;
	dereg_midway(MIDWAY_RECV);
}

static void t_dereg_sink_midway(const char *arg)
{
	(void)arg;
	dereg_midway(MIDWAY_SINK);
}

/*
 * The same for the source of a big SEND (docs/semantics.md, "Faults while
 * data moves"): its MR is deregistered once the first byte has arrived at
 * the receiver, and the application then zeroes the source. No byte may be
 * read from the source after pw_dereg_mr returned: the SEND fails with
 * LOC_PROT_ERR, the stream is cut inside the message so that the receive
 * is flushed (never successful), and not one zero (the reused source)
 * reaches the receive buffer, which held RECV_BYTE before.
 */
#define RECV_BYTE	0xc3
/* More than socket buffers hold: what the sender can be ahead of b by. */
#define IN_FLIGHT_MAX	(64 * PWT_MIB)

static bool dereg_src_midway_once(size_t len)
{
	struct pwt_pair p;
	struct pw_mr *smr, *rmr;
	uint8_t *src, *rbuf;
	uint64_t t0, t_dereg;
	size_t bad, first;
	bool near_end;

	pwt_pair_open(&p, NULL);
	src = pwt_map(len);
	memset(src, FILL_BYTE, len);
	rbuf = pwt_map(len);
	memset(rbuf, RECV_BYTE, len);
	smr = pw_reg_mr(p.a.pd, src, len, PW_ACCESS_LOCAL_WRITE | PW_ACCESS_ON_DEMAND);
	PWT_NONNULL(smr);
	rmr = pw_reg_mr(p.b.pd, rbuf, len, PW_ACCESS_LOCAL_WRITE | PW_ACCESS_ON_DEMAND);
	PWT_NONNULL(rmr);

	t0 = pwt_now_us();
	PWT_OK(pwt_post_recv1(p.b.qp, RECV_ID0, rbuf, (uint32_t)len, rmr->lkey));
	PWT_OK(pwt_post_send1(p.a.qp, PW_WR_SEND, ERR_WR_ID, src, (uint32_t)len,
			      smr->lkey, 0, PW_SEND_SIGNALED));
	{
		uint64_t deadline = pwt_now_ms() + PWT_TIMEOUT_MS;

		while (peek_u8(rbuf) == RECV_BYTE) {
			PWT_ASSERTF(pwt_now_ms() < deadline,
				    "receive buffer: no byte arrived within %d ms",
				    PWT_TIMEOUT_MS);
			sched_yield();
		}
	}
	PWT_OK(pw_dereg_mr(smr));
	t_dereg = pwt_now_us() - t0;
	/* Placement is in order: had the receiver got close to the end, the
	 * sender could have sent the whole message before the dereg. */
	near_end = peek_u8(rbuf + len - IN_FLIGHT_MAX) != RECV_BYTE;
	/* The application reuses the source at once. */
	memset(src, 0, len);

	if (near_end) {
		struct pw_wc wc;

		printf("%zu MiB: the receiver had got near the end when pw_dereg_mr "
		       "returned (%" PRIu64 " us after posting): too fast\n",
		       len / PWT_MIB, t_dereg);
		pwt_wait_wc_at(__FILE__, __LINE__, p.b.rcq, &wc, BIG_TIMEOUT_MS);
		pwt_wait_wc_at(__FILE__, __LINE__, p.a.scq, &wc, BIG_TIMEOUT_MS);
	} else {
		printf("%zu MiB: source MR deregistered %" PRIu64 " us after posting, "
		       "mid-transfer\n", len / PWT_MIB, t_dereg);
		EXPECT_ERR_WITHIN(p.a.scq, ERR_WR_ID, PW_WC_LOC_PROT_ERR,
				  p.a.qp->qp_num, BIG_TIMEOUT_MS);
		EXPECT_ERR_WITHIN(p.b.rcq, RECV_ID0, PW_WC_WR_FLUSH_ERR,
				  p.b.qp->qp_num, BIG_TIMEOUT_MS);
		PWT_WAIT_STATE(p.a.qp, PW_QPS_ERR);
		PWT_WAIT_STATE(p.b.qp, PW_QPS_ERR);
		expect_quiet(&p.a);
		expect_quiet(&p.b);
	}
	destroy_qps(&p);
	if (!near_end) {
		/* A flushed receive's buffer is undefined, but only in that
		 * it may hold part of the message: never the reused source. */
		bad = count_other(rbuf, len, FILL_BYTE, RECV_BYTE, &first);
		PWT_ASSERTF(bad == 0,
			    "%zu bytes of the receive buffer came from the source "
			    "after pw_dereg_mr returned, the first at offset %zu of %zu "
			    "(0x%02x)", bad, first, len, rbuf[first]);
	}

	PWT_OK(pw_dereg_mr(rmr));
	pwt_unmap(src, len);
	pwt_unmap(rbuf, len);
	pwt_pair_close(&p);
	return !near_end;
}

static void t_dereg_src_midway(const char *arg)
{
	(void)arg;
	for (size_t len = 256 * PWT_MIB; len <= PWT_GIB; len *= 2)
		if (dereg_src_midway_once(len))
			return;
	pwt_fail(__FILE__, __LINE__,
		 "even with 1 GiB the receiver was near the end before pw_dereg_mr "
		 "returned: the deregistration never happened mid-transfer, nothing "
		 "was tested");
}

/* ------------------------------------------------------------------ */
/* rep4: a receive larger than 2^31 bytes                               */
/* ------------------------------------------------------------------ */

/*
 * A receive may be larger than PW_MAX_MSG_SIZE (only a message may not):
 * one SGE of 3 GiB (ODP over a NORESERVE mapping) takes a small SEND, and
 * so does a receive of two SGEs summing to over 2^31.
 */
static void t_recv_over_2g(const char *arg)
{
	const size_t pg = page_size();
	const size_t big = 3 * PWT_GIB;
	struct pwt_pair p;
	struct pwt_img src;
	struct pw_mr *rmr;
	struct pw_sge sge[2];
	struct pw_recv_wr rwr, *rbad = NULL;
	uint8_t *rbuf, *want;

	(void)arg;
	pwt_pair_open(&p, NULL);
	pwt_img_alloc_src(&src, &p.a, pg, PWT_PINNED, 121);
	rbuf = pwt_map(big);
	rmr = pw_reg_mr(p.b.pd, rbuf, big, PW_ACCESS_LOCAL_WRITE | PW_ACCESS_ON_DEMAND);
	PWT_NONNULL(rmr);
	want = calloc(1, 4 * pg);
	PWT_ASSERT(want);

	/* One SGE of 3 GiB. */
	PWT_OK(pwt_post_recv1(p.b.qp, RECV_ID0, rbuf, (uint32_t)big, rmr->lkey));
	PWT_OK(pwt_post_send1(p.a.qp, PW_WR_SEND, 0x41, src.buf.addr, 64,
			      src.buf.lkey, 0, PW_SEND_SIGNALED));
	PWT_EXPECT_RECV(p.b.rcq, RECV_ID0, PW_WC_RECV, 64, false, 0, p.b.qp->qp_num);
	PWT_EXPECT_OK(p.a.scq, 0x41, PW_WC_SEND, 64, p.a.qp->qp_num);
	memcpy(want, src.want, 64);
	PWT_MEMEQ(rbuf, want, 4 * pg);

	/* Two SGEs: 16 bytes, then 3 GiB - 3 pages (over 2^31 in total). */
	sge[0] = (struct pw_sge){ pwt_va(rbuf + 2 * pg), 16, rmr->lkey };
	sge[1] = (struct pw_sge){ pwt_va(rbuf + 3 * pg), (uint32_t)(big - 3 * pg),
				  rmr->lkey };
	memset(&rwr, 0, sizeof(rwr));
	rwr.wr_id = RECV_ID0 + 1;
	rwr.sg_list = sge;
	rwr.num_sge = 2;
	PWT_OK(pw_post_recv(p.b.qp, &rwr, &rbad));
	PWT_OK(pwt_post_send1(p.a.qp, PW_WR_SEND, 0x42, src.buf.addr + 64, 100,
			      src.buf.lkey, 0, PW_SEND_SIGNALED));
	PWT_EXPECT_RECV(p.b.rcq, RECV_ID0 + 1, PW_WC_RECV, 100, false, 0,
			p.b.qp->qp_num);
	PWT_EXPECT_OK(p.a.scq, 0x42, PW_WC_SEND, 100, p.a.qp->qp_num);
	memcpy(want + 2 * pg, src.want + 64, 16);
	memcpy(want + 3 * pg, src.want + 80, 84);
	PWT_MEMEQ(rbuf, want, 4 * pg);

	PWT_EQ(pw_qp_state(p.a.qp), PW_QPS_RTS);
	PWT_EQ(pw_qp_state(p.b.qp), PW_QPS_RTS);
	expect_quiet(&p.a);
	expect_quiet(&p.b);
	free(want);
	PWT_OK(pw_dereg_mr(rmr));
	pwt_unmap(rbuf, big);
	pwt_img_free(&src);
	pwt_pair_close(&p);
}

/* ------------------------------------------------------------------ */
/* rep5: a destroyed responder owed a READ response                     */
/* ------------------------------------------------------------------ */

#define BIG_WR_ID	0xb1u
#define READ_WR_ID	0xa1u
#define WRITE_WR_ID	0xa2u

/* QPs first (nothing may be using the MRs), then buffers, then the rest. */
static void destroy_read_resp_free(struct pwt_pair *p, struct pwt_buf *abig,
				   struct pwt_buf *bbig, struct pwt_img *asrc,
				   struct pwt_img *asink, struct pwt_img *bmem)
{
	destroy_qps(p);
	pwt_buf_free(abig);
	pwt_buf_free(bbig);
	pwt_img_free(asrc);
	pwt_img_free(asink);
	pwt_img_free(bmem);
	pwt_pair_close(p);
}

/*
 * b streams a big WRITE to a. Meanwhile a posts a READ and a WRITE to b;
 * b executes both (the WRITE's data is in b's memory), so the READ
 * response is queued behind b's big WRITE and an ACK for a's WRITE is
 * owed. Then b destroys its QP: the READ response is dropped, and an ACK
 * must not acknowledge the READ along with the WRITE. a's READ completes
 * with RETRY_EXC_ERR (the peer vanished; never FATAL_ERR), the WRITE
 * behind it is flushed. Returns false when the scenario did not happen
 * (b's big WRITE was over, or the READ answered, before the destroy).
 */
static bool destroy_read_resp_once(size_t big)
{
	struct pwt_pair p;
	struct pwt_buf abig, bbig;
	struct pwt_img asrc, asink, bmem;
	struct pw_send_wr wr[2], *bad = NULL;
	struct pw_sge sge[2];
	struct pw_wc wc;
	uint64_t deadline;
	const char *vacuous = NULL;
	int n;

	pwt_pair_open(&p, NULL);
	pwt_buf_alloc(&abig, &p.a, big, PWT_ACCESS_ALL, PWT_ODP);
	pwt_buf_alloc(&bbig, &p.b, big, PWT_ACCESS_ALL, PWT_ODP);
	memset(bbig.addr, FILL_BYTE, big);
	pwt_img_alloc_src(&asrc, &p.a, 4096, PWT_PINNED, 131);
	pwt_img_alloc(&asink, &p.a, 4096, PWT_PINNED, 132);
	pwt_img_alloc(&bmem, &p.b, 8192, PWT_PINNED, 133);

	PWT_OK(pwt_post_rdma(p.b.qp, PW_WR_RDMA_WRITE, BIG_WR_ID, bbig.addr,
			     (uint32_t)big, bbig.lkey, pwt_va(abig.addr), abig.rkey,
			     PW_SEND_SIGNALED));
	/* b's send side is busy with the big WRITE. */
	wait_nonzero(abig.addr, PWT_TIMEOUT_MS, "big WRITE");

	memset(wr, 0, sizeof(wr));
	sge[0] = (struct pw_sge){ pwt_va(asink.buf.addr + 100), 64, asink.buf.lkey };
	wr[0].wr_id = READ_WR_ID;
	wr[0].sg_list = &sge[0];
	wr[0].num_sge = 1;
	wr[0].opcode = PW_WR_RDMA_READ;
	wr[0].send_flags = PW_SEND_SIGNALED;
	wr[0].wr.rdma.remote_addr = pwt_va(bmem.buf.addr + 128);
	wr[0].wr.rdma.rkey = bmem.buf.rkey;
	wr[0].next = &wr[1];
	sge[1] = (struct pw_sge){ pwt_va(asrc.buf.addr + 256), 64, asrc.buf.lkey };
	wr[1].wr_id = WRITE_WR_ID;
	wr[1].sg_list = &sge[1];
	wr[1].num_sge = 1;
	wr[1].opcode = PW_WR_RDMA_WRITE;
	wr[1].send_flags = PW_SEND_SIGNALED;
	wr[1].wr.rdma.remote_addr = pwt_va(bmem.buf.addr + 4096 + 256);
	wr[1].wr.rdma.rkey = bmem.buf.rkey;
	PWT_OK(pw_post_send(p.a.qp, wr, &bad));

	/* b executed the WRITE, hence the READ before it (RC order). */
	deadline = pwt_now_ms() + PWT_TIMEOUT_MS;
	for (;;) {
		uint8_t got[64];

		PWT_ASSERT(pwt_peek(got, bmem.buf.addr + 4096 + 256, sizeof(got)));
		if (!memcmp(got, asrc.buf.addr + 256, sizeof(got)))
			break;
		PWT_ASSERTF(pwt_now_ms() < deadline,
			    "a's WRITE did not land at b within %d ms", PWT_TIMEOUT_MS);
		sched_yield();
	}

	if (peek_u8(abig.addr + big - 1) != 0)
		vacuous = "the big WRITE had fully arrived";
	else if ((n = pw_poll_cq(p.b.scq, 1, &wc)) != 0)
		vacuous = "the big WRITE had completed";
	else if ((n = pw_poll_cq(p.a.scq, 1, &wc)) != 0)
		vacuous = "the READ had completed";
	if (vacuous) {
		printf("%zu MiB: %s before the destroy: too fast\n", big / PWT_MIB,
		       vacuous);
		destroy_read_resp_free(&p, &abig, &bbig, &asrc, &asink, &bmem);
		return false;
	}

	{
		uint32_t bqpn = p.b.qp->qp_num;

		PWT_OK(pw_destroy_qp(p.b.qp));
		p.b.qp = NULL;
		/* Flushed before pw_destroy_qp returned. */
		n = pw_poll_cq(p.b.scq, 1, &wc);
		PWT_EQ(n, 1);
		PWT_EQ(wc.wr_id, BIG_WR_ID);
		PWT_ASSERTF(wc.status == PW_WC_WR_FLUSH_ERR,
			    "b's big WRITE: %s, want %s", pw_wc_status_str(wc.status),
			    pw_wc_status_str(PW_WC_WR_FLUSH_ERR));
		PWT_EQ(wc.qp_num, bqpn);
	}
	printf("%zu MiB: b destroyed with the READ response queued\n", big / PWT_MIB);

	EXPECT_ERR_WITHIN(p.a.scq, READ_WR_ID, PW_WC_RETRY_EXC_ERR,
			  p.a.qp->qp_num, BIG_TIMEOUT_MS);
	EXPECT_ERR_WITHIN(p.a.scq, WRITE_WR_ID, PW_WC_WR_FLUSH_ERR,
			  p.a.qp->qp_num, PWT_TIMEOUT_MS);
	PWT_WAIT_STATE(p.a.qp, PW_QPS_ERR);
	expect_quiet(&p.a);
	expect_quiet(&p.b);
	/* Verbs leaves a failed READ's sink undefined; no byte outside the
	 * READ's 64 may change, and a's WRITE landed at b (it was executed). */
	memcpy(asink.want + 100, asink.buf.addr + 100, 64);
	PWT_IMG_CHECK(&asink);
	memcpy(bmem.want + 4096 + 256, asrc.want + 256, 64);
	PWT_IMG_CHECK(&bmem);
	PWT_IMG_CHECK(&asrc);

	destroy_read_resp_free(&p, &abig, &bbig, &asrc, &asink, &bmem);
	return true;
}

static void t_destroy_drops_read_resp(const char *arg)
{
	(void)arg;
	for (size_t big = 256 * PWT_MIB; big <= PWT_GIB; big *= 2)
		if (destroy_read_resp_once(big))
			return;
	pwt_fail(__FILE__, __LINE__,
		 "even a 1 GiB WRITE was over before the destroy: the READ "
		 "response was never queued behind it, nothing was tested");
}

/* ------------------------------------------------------------------ */
/* The receiver of a SEND destroys its QP right after the completion    */
/* ------------------------------------------------------------------ */

#define ACK_ROUNDS	200

/*
 * The SEND was executed (its receive completed), so the ACK owed for it
 * must leave before the destroyed QP shuts the connection: the sender's
 * signaled SEND completes successfully, never with RETRY_EXC_ERR. The
 * original bug was a race lost about once in 200 rounds, hence the loop;
 * every round uses a fresh QP pair between the same two contexts.
 */
static void t_destroy_acks_send(const char *arg)
{
	const size_t pg = page_size();
	struct pwt_pair p;
	struct pwt_img src, rb;

	(void)arg;
	pwt_pair_open(&p, NULL);
	pwt_img_alloc_src(&src, &p.a, 2 * pg, PWT_PINNED, 141);
	pwt_img_alloc(&rb, &p.b, pg, PWT_PINNED, 142);
	for (unsigned int i = 0; i < ACK_ROUNDS; i++) {
		uint32_t len = 1 + (i * 97u) % (uint32_t)pg;
		size_t off = (i * 131u) % pg;
		struct pw_qp *qa, *qb;
		uint32_t qan;
		struct pw_wc wc;

		pwt_connect_qp(&p.a, &p.b, p.l, NULL, NULL, &qa, &qb);
		qan = qa->qp_num;
		PWT_OK(pwt_post_recv1(qb, i, rb.buf.addr, (uint32_t)pg, rb.buf.lkey));
		PWT_OK(pwt_post_send1(qa, PW_WR_SEND, 0x1000 + i, src.buf.addr + off,
				      len, src.buf.lkey, 0, PW_SEND_SIGNALED));
		PWT_EXPECT_RECV(p.b.rcq, i, PW_WC_RECV, len, false, 0, qb->qp_num);
		PWT_OK(pw_destroy_qp(qb));

		pwt_wait_wc_at(__FILE__, __LINE__, p.a.scq, &wc, PWT_TIMEOUT_MS);
		PWT_ASSERTF(wc.wr_id == 0x1000 + i && wc.status == PW_WC_SUCCESS,
			    "round %u: SEND wr_id 0x%" PRIx64 " completed with %s "
			    "after the receiver destroyed its QP; want 0x%x SUCCESS",
			    i, wc.wr_id, pw_wc_status_str(wc.status), 0x1000 + i);
		PWT_EQ(wc.opcode, PW_WC_SEND);
		PWT_EQ(wc.byte_len, len);
		PWT_EQ(wc.qp_num, qan);
		memcpy(rb.want, src.want + off, len);
		PWT_MEMEQ(rb.buf.addr, rb.want, len);

		PWT_OK(pw_destroy_qp(qa));
		expect_quiet(&p.a);
		expect_quiet(&p.b);
	}
	/* The pair's own QPs were never disturbed. */
	PWT_EQ(pw_qp_state(p.a.qp), PW_QPS_RTS);
	PWT_EQ(pw_qp_state(p.b.qp), PW_QPS_RTS);
	pwt_img_free(&src);
	pwt_img_free(&rb);
	pwt_pair_close(&p);
}

/* ------------------------------------------------------------------ */
/* FOLLOW_VA: pages fault-around brings back are watched again          */
/* ------------------------------------------------------------------ */

static void write_wait(struct pwt_pair *p, struct pwt_buf *src, uint8_t *dst,
		       uint32_t rkey, uint32_t len, uint64_t id)
{
	PWT_OK(pwt_post_rdma(p->a.qp, PW_WR_RDMA_WRITE, id, src->addr, len,
			     src->lkey, pwt_va(dst), rkey, PW_SEND_SIGNALED));
	PWT_EXPECT_OK(p->a.scq, id, PW_WC_RDMA_WRITE, len, p->a.qp->qp_num);
}

/*
 * Found by the soak test (tests/soak): a FOLLOW_VA MR, part unmapped and
 * mapped again; WRITEs into pages 5 then 6 make a sequential stream, so
 * fault-around also brings page 7 back. Page 7 must be watched again
 * (docs/semantics.md: "a range faulted in again after an unmap is
 * registered anew"): its MADV_DONTNEED is an event that drops it from the
 * page table. Before the fix only the faulting pages were re-watched and
 * page 7 stayed "valid" over nothing.
 */
static void t_follow_va_rewatch_ahead(const char *arg)
{
	const size_t pg = 4096;
	struct pwt_pair p;
	struct pwt_buf src;
	struct pw_stats s1, s2;
	struct pw_mr *mr;
	uint8_t *dst;

	(void)arg;
	pwt_pair_open(&p, NULL);
	if (pwt_stats(p.b.ctx).notifier_off) {
		pwt_pair_close(&p);
		pwt_skip_part("no userfaultfd here: nothing is watched");
		return;
	}
	pwt_buf_alloc(&src, &p.a, 16 * pg, PWT_ACCESS_ALL, PWT_PINNED);
	dst = pwt_map(16 * pg);
	mr = pw_reg_mr(p.b.pd, dst, 16 * pg, PWT_ACCESS_ALL | PW_ACCESS_ON_DEMAND |
		       PW_ACCESS_ODP_FOLLOW_VA);
	PWT_NONNULL(mr);
	write_wait(&p, &src, dst, mr->rkey, (uint32_t)(16 * pg), 1);
	PWT_ASSERT(munmap(dst + 4 * pg, 4 * pg) == 0);
	PWT_ASSERT(mmap(dst + 4 * pg, 4 * pg, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) ==
		   dst + 4 * pg);
	write_wait(&p, &src, dst + 5 * pg, mr->rkey, 100, 2);
	write_wait(&p, &src, dst + 6 * pg, mr->rkey, 100, 3);
	/* the fault-around runs after the fault is reported: let it finish */
	pwt_sleep_ms(100);
	s1 = pwt_stats(p.b.ctx);
	PWT_ASSERTF(s1.fault_around_pages > 0, "no fault-around happened");
	PWT_ASSERT(madvise(dst + 7 * pg, pg, MADV_DONTNEED) == 0);
	/* madvise returns once the event is read; the handler then counts it */
	for (int i = 0; i < 200; i++) {
		s2 = pwt_stats(p.b.ctx);
		if (s2.notifier_events > s1.notifier_events)
			break;
		pwt_sleep_ms(10);
	}
	PWT_ASSERTF(s2.notifier_events > s1.notifier_events,
		    "MADV_DONTNEED of a page fault-around brought back went unseen");
	PWT_EQ(s2.resident_bytes, s1.resident_bytes - pg);
	PWT_OK(pw_dereg_mr(mr));
	pwt_unmap(dst, 16 * pg);
	pwt_buf_free(&src);
	pwt_pair_close(&p);
}

static const struct pwt_case cases[] = {
	{ "recv_buf_unmapped", t_recv_buf_unmapped },
	{ "send_src_unmapped", t_send_src_unmapped },
	{ "send_src_unmapped_tail", t_send_src_unmapped_tail },
	{ "write_src_unmapped", t_write_src_unmapped },
	{ "write_src_unmapped_tail", t_write_src_unmapped_tail },
	{ "dereg_recv_midway", t_dereg_recv_midway },
	{ "dereg_sink_midway", t_dereg_sink_midway },
	{ "dereg_src_midway", t_dereg_src_midway },
	{ "recv_over_2g", t_recv_over_2g },
	{ "destroy_drops_read_resp", t_destroy_drops_read_resp },
	{ "destroy_acks_send", t_destroy_acks_send },
	{ "follow_va_rewatch_ahead", t_follow_va_rewatch_ahead },
};

int main(int argc, char **argv)
{
	return pwt_main(argc, argv, cases, PWT_ARRAY_SIZE(cases));
}
