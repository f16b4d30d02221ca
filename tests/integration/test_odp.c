/* SPDX-License-Identifier: MIT */
/*
 * Demand paging on the responder: remote ops into ODP pages the device
 * page table does not hold yet fault through the fault engine,
 * off the progress thread, under the STALL policy, and land exactly once
 * with the right data; ops into no mapping fail with a remote access
 * error; other QPs keep running while one stalls.
 *
 * Some cases read the fault counters straight from the context internals
 * (core/context.h), others through pw_query_stats(), which reports the
 * same counters.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/context.h"
#include "pwtest.h"

static uint64_t faults(struct pw_context *ctx)
{
	return atomic_load(&ctx->faults.stats.faults);
}

/* pages populated for ops, plus ahead of them (a stream's later steps) */
static uint64_t fault_pages(struct pw_context *ctx)
{
	return atomic_load(&ctx->faults.stats.pages) +
	       atomic_load(&ctx->faults.stats.around_pages);
}

/*
 * One WRITE of @len into an untouched ODP target: it faults (the page
 * table starts empty), lands byte for byte, and a second WRITE into the
 * same pages faults no more.
 */
static void write_fresh(size_t len)
{
	struct pwt_pair p;
	struct pwt_img src, dst;
	uint64_t f0;

	pwt_pair_open(&p, NULL);
	pwt_img_alloc_src(&src, &p.a, len, PWT_PINNED, 21);
	pwt_img_alloc(&dst, &p.b, len, PWT_ODP, 0);
	f0 = faults(p.b.ctx);

	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 1, src.buf.addr,
			     (uint32_t)len, src.buf.lkey, pwt_va(dst.buf.addr),
			     dst.buf.rkey, PW_SEND_SIGNALED));
	PWT_EXPECT_OK(p.a.scq, 1, PW_WC_RDMA_WRITE, (uint32_t)len,
		      p.a.qp->qp_num);
	memcpy(dst.want, src.want, len);
	PWT_IMG_CHECK(&dst);
	PWT_ASSERTF(faults(p.b.ctx) > f0, "a WRITE into untouched ODP pages took no fault");
	PWT_ASSERTF(fault_pages(p.b.ctx) >= (len + 4095) / 4096,
		    "faulted %llu pages for %zu bytes",
		    (unsigned long long)fault_pages(p.b.ctx), len);

	/* the same pages again: valid in the page table, no new fault */
	f0 = faults(p.b.ctx);
	pwt_fill(src.buf.addr, len, 22);
	pwt_fill(src.want, len, 22);
	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 2, src.buf.addr,
			     (uint32_t)len, src.buf.lkey, pwt_va(dst.buf.addr),
			     dst.buf.rkey, PW_SEND_SIGNALED));
	PWT_EXPECT_OK(p.a.scq, 2, PW_WC_RDMA_WRITE, (uint32_t)len,
		      p.a.qp->qp_num);
	memcpy(dst.want, src.want, len);
	PWT_IMG_CHECK(&dst);
	PWT_EQ(faults(p.b.ctx), f0);

	pwt_img_free(&dst);
	pwt_img_free(&src);
	pwt_pair_close(&p);
}

static void t_write_fresh(const char *arg)
{
	(void)arg;
	write_fresh(8);
	write_fresh(4096 + 100);
	write_fresh(PWT_MIB);
}

/*
 * Small faults in an anonymous mapping the worker has seen are resolved
 * inline (no stall, counted in inline_faults); with PW_FAULT_INLINE=off
 * none are. Data lands exactly either way.
 */
static void t_write_inline(const char *arg)
{
	const size_t pg = 4096, n = 32;
	struct pwt_pair p;
	struct pwt_img src, dst;
	bool off = getenv("PW_FAULT_INLINE") && !strcmp(getenv("PW_FAULT_INLINE"), "off");
	uint64_t in0;

	(void)arg;
	pwt_pair_open(&p, NULL);
	pwt_img_alloc_src(&src, &p.a, pg, PWT_PINNED, 51);
	pwt_img_alloc(&dst, &p.b, 2 * n * pg, PWT_ODP, 0);
	in0 = atomic_load(&p.b.ctx->faults.stats.inline_faults);
	/* every other page: no fault looks sequential (no fault-around) */
	for (size_t i = 0; i < n; i++) {
		PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, i, src.buf.addr + 8,
				     8, src.buf.lkey,
				     pwt_va(dst.buf.addr + 2 * i * pg + 16),
				     dst.buf.rkey, PW_SEND_SIGNALED));
		PWT_EXPECT_OK(p.a.scq, i, PW_WC_RDMA_WRITE, 8, p.a.qp->qp_num);
		memcpy(dst.want + 2 * i * pg + 16, src.want + 8, 8);
	}
	PWT_IMG_CHECK(&dst);
	if (off)
		PWT_EQ(atomic_load(&p.b.ctx->faults.stats.inline_faults), in0);
	else
		PWT_ASSERTF(atomic_load(&p.b.ctx->faults.stats.inline_faults) - in0 >= n - 1,
			    "%llu of %zu small faults inline",
			    (unsigned long long)(atomic_load(&p.b.ctx->faults.stats.inline_faults) - in0),
			    n);
	pwt_img_free(&dst);
	pwt_img_free(&src);
	pwt_pair_close(&p);
}

/*
 * A stream of WRITEs through a fresh region, each starting where the
 * last ended: every byte lands, and few of them need the worker: its
 * fault-around populates ahead (what PW_FAULT_INLINE=off shows), or each
 * small fault is resolved inline.
 */
static void t_write_stream(const char *arg)
{
	const size_t chunk = 64 * PWT_KIB, total = 16 * PWT_MIB;
	struct pwt_pair p;
	struct pwt_img src, dst;
	uint64_t f0, n = total / chunk;

	(void)arg;
	pwt_pair_open(&p, NULL);
	pwt_img_alloc_src(&src, &p.a, total, PWT_PINNED, 23);
	pwt_img_alloc(&dst, &p.b, total, PWT_ODP, 0);
	f0 = faults(p.b.ctx);
	/* windows of 32 WRs, the last of each signalled (the SQ holds 128) */
	for (uint64_t i = 0; i < n; i++) {
		bool last = (i + 1) % 32 == 0 || i + 1 == n;

		PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, i,
				     src.buf.addr + i * chunk, (uint32_t)chunk,
				     src.buf.lkey,
				     pwt_va(dst.buf.addr + i * chunk),
				     dst.buf.rkey, last ? PW_SEND_SIGNALED : 0));
		if (last)
			PWT_EXPECT_OK(p.a.scq, i, PW_WC_RDMA_WRITE,
				      (uint32_t)chunk, p.a.qp->qp_num);
	}
	memcpy(dst.want, src.want, total);
	PWT_IMG_CHECK(&dst);
	{
		uint64_t worker = faults(p.b.ctx) - f0 -
				  atomic_load(&p.b.ctx->faults.stats.inline_faults);
		bool off = getenv("PW_FAULT_INLINE") &&
			   !strcmp(getenv("PW_FAULT_INLINE"), "off");

		/*
		 * fault-around runs after each fault is reported, so some
		 * WRITEs still queue a (quick) fault behind it; most must not
		 */
		PWT_ASSERTF(worker <= n * 3 / 4,
			    "%llu worker faults for %llu sequential WRITEs: no fault-around",
			    (unsigned long long)worker, (unsigned long long)n);
		if (off)
			PWT_ASSERT(atomic_load(&p.b.ctx->faults.stats.around_pages) > 0);
	}
	pwt_img_free(&dst);
	pwt_img_free(&src);
	pwt_pair_close(&p);
}

/*
 * A WRITE into an ODP MR where nothing is mapped (a hole munmap'ed
 * before the first touch): the fault finds no mapping, the op completes
 * with a remote access error, the pages around it are untouched. Under
 * DROP the request is NAKed first, faulted in the background, and the
 * resend gets the error.
 */
static void write_into_hole(uint32_t policy)
{
	const size_t pg = 4096;
	struct pwt_pair_opts o;
	struct pwt_pair p;
	struct pwt_img src;
	struct pw_mr *mr;
	uint8_t *base;
	uint64_t failed0;

	memset(&o, 0, sizeof(o));
	o.b_attr.fault_policy = policy;
	pwt_pair_open(&p, &o);
	pwt_img_alloc_src(&src, &p.a, pg, PWT_PINNED, 24);
	base = pwt_map(3 * pg);
	/* a hole before registration: found by a fault (one after it is the
	 * notifier's, semantics.munmap_odp) */
	pwt_unmap(base + pg, pg);
	mr = pw_reg_mr(p.b.pd, base, 3 * pg, PWT_ACCESS_ALL | PW_ACCESS_ON_DEMAND);
	PWT_NONNULL(mr);
	failed0 = atomic_load(&p.b.ctx->faults.stats.failed);

	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 7, src.buf.addr, 64,
			     src.buf.lkey, pwt_va(base + pg + 8), mr->rkey,
			     PW_SEND_SIGNALED));
	PWT_EXPECT_ERR(p.a.scq, 7, PW_WC_REM_ACCESS_ERR, p.a.qp->qp_num);
	PWT_ASSERT(atomic_load(&p.b.ctx->faults.stats.failed) > failed0);
	PWT_ZERO(base, pg);
	PWT_ZERO(base + 2 * pg, pg);

	PWT_OK(pw_dereg_mr(mr));
	pwt_unmap(base, pg);
	pwt_unmap(base + 2 * pg, pg);
	pwt_img_free(&src);
	pwt_pair_close(&p);
}

static void t_write_hole(const char *arg)
{
	(void)arg;
	write_into_hole(PW_FAULT_STALL);
}

static void t_drop_hole(const char *arg)
{
	(void)arg;
	write_into_hole(PW_FAULT_DROP);
}

/*
 * 16 QPs, each writing 1 MiB into its own untouched ODP region at once:
 * the faults of one QP stall only that QP; every byte of every region
 * lands.
 */
static void t_write_qps(const char *arg)
{
	enum { NQP = 16 };
	const size_t len = PWT_MIB;
	struct pwt_pair p;
	struct pwt_img src, dst[NQP];
	struct pw_qp *qa[NQP], *qb[NQP];

	(void)arg;
	pwt_pair_open(&p, NULL);
	pwt_img_alloc_src(&src, &p.a, len, PWT_PINNED, 25);
	qa[0] = p.a.qp;
	qb[0] = p.b.qp;
	for (int i = 1; i < NQP; i++)
		pwt_connect_qp(&p.a, &p.b, p.l, &p.a.attr, &p.b.attr, &qa[i],
			       &qb[i]);
	for (int i = 0; i < NQP; i++) {
		pwt_img_alloc(&dst[i], &p.b, len, PWT_ODP, 0);
		PWT_OK(pwt_post_rdma(qa[i], PW_WR_RDMA_WRITE, (uint64_t)i,
				     src.buf.addr, (uint32_t)len, src.buf.lkey,
				     pwt_va(dst[i].buf.addr), dst[i].buf.rkey,
				     PW_SEND_SIGNALED));
	}
	for (int i = 0; i < NQP; i++) {
		struct pw_wc wc;

		PWT_WAIT_WC(p.a.scq, &wc);
		PWT_EQ(wc.status, PW_WC_SUCCESS);
		PWT_ASSERT(wc.wr_id < NQP);
		PWT_EQ(wc.qp_num, qa[wc.wr_id]->qp_num);
	}
	for (int i = 0; i < NQP; i++) {
		memcpy(dst[i].want, src.want, len);
		PWT_IMG_CHECK(&dst[i]);
	}
	PWT_ASSERT(faults(p.b.ctx) >= NQP);
	for (int i = 1; i < NQP; i++) {
		PWT_OK(pw_destroy_qp(qa[i]));
		PWT_OK(pw_destroy_qp(qb[i]));
	}
	for (int i = 0; i < NQP; i++)
		pwt_img_free(&dst[i]);
	pwt_img_free(&src);
	pwt_pair_close(&p);
}

/*
 * Implicit ODP: WRITEs to scattered fresh mappings across the address
 * space all fault in and land; the page table stays sparse.
 */
static void t_write_implicit(const char *arg)
{
	enum { N = 8 };
	const size_t len = 3 * 4096;
	struct pwt_pair p;
	struct pwt_img src;
	struct pw_mr *imr;
	uint8_t *dst[N];

	(void)arg;
	pwt_pair_open(&p, NULL);
	pwt_img_alloc_src(&src, &p.a, len, PWT_PINNED, 26);
	imr = pw_reg_mr(p.b.pd, NULL, SIZE_MAX, PWT_ACCESS_ALL | PW_ACCESS_ON_DEMAND);
	PWT_NONNULL(imr);
	for (int i = 0; i < N; i++) {
		/* spread out: each mapping in its own 1 GiB-aligned area */
		void *hint = (void *)(uintptr_t)(((uint64_t)(i + 1) << 36) +
						 ((uint64_t)i << 30));

		dst[i] = mmap(hint, len, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		PWT_ASSERT(dst[i] != MAP_FAILED);
		PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, (uint64_t)i,
				     src.buf.addr + 100, (uint32_t)(len - 200),
				     src.buf.lkey, pwt_va(dst[i] + 100),
				     imr->rkey, PW_SEND_SIGNALED));
		PWT_EXPECT_OK(p.a.scq, (uint64_t)i, PW_WC_RDMA_WRITE,
			      (uint32_t)(len - 200), p.a.qp->qp_num);
		PWT_MEMEQ(dst[i] + 100, src.want + 100, len - 200);
		PWT_ZERO(dst[i], 100);
		PWT_ZERO(dst[i] + len - 100, 100);
	}
	PWT_ASSERT(faults(p.b.ctx) >= N);
	PWT_OK(pw_dereg_mr(imr));
	for (int i = 0; i < N; i++)
		munmap(dst[i], len);
	pwt_img_free(&src);
	pwt_pair_close(&p);
}

/*
 * pw_advise_mr(): a synchronous PREFETCH_WRITE makes the next WRITE take
 * no fault at all; an asynchronous one gets there too (waited for through
 * the counters); bad arguments are refused with EINVAL.
 */
static void t_advise(const char *arg)
{
	const size_t len = 256 * PWT_KIB;
	struct pwt_pair p;
	struct pwt_img src, dst, dst2;
	struct pw_sge sge;
	struct pw_stats st;
	uint64_t f0;

	(void)arg;
	pwt_pair_open(&p, NULL);
	pwt_img_alloc_src(&src, &p.a, len, PWT_PINNED, 27);
	pwt_img_alloc(&dst, &p.b, len, PWT_ODP, 0);
	pwt_img_alloc(&dst2, &p.b, len, PWT_ODP, 0);

	sge.addr = pwt_va(dst.buf.addr);
	sge.length = (uint32_t)len;
	sge.lkey = dst.buf.lkey;
	PWT_OK(pw_advise_mr(p.b.pd, PW_ADVISE_MR_ADVICE_PREFETCH_WRITE,
			    PW_ADVISE_MR_FLAG_FLUSH, &sge, 1));
	PWT_OK(pw_query_stats(p.b.ctx, &st, sizeof(st)));
	f0 = st.faults;
	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 1, src.buf.addr,
			     (uint32_t)len, src.buf.lkey, pwt_va(dst.buf.addr),
			     dst.buf.rkey, PW_SEND_SIGNALED));
	PWT_EXPECT_OK(p.a.scq, 1, PW_WC_RDMA_WRITE, (uint32_t)len,
		      p.a.qp->qp_num);
	memcpy(dst.want, src.want, len);
	PWT_IMG_CHECK(&dst);
	PWT_OK(pw_query_stats(p.b.ctx, &st, sizeof(st)));
	PWT_EQ(st.faults, f0);		/* prefetched: no fault */
	PWT_ASSERT(st.fault_pages == 0);	/* advice is not an op fault */

	/* asynchronous: queued, done by the fault engine */
	sge.addr = pwt_va(dst2.buf.addr);
	sge.lkey = dst2.buf.lkey;
	PWT_OK(pw_advise_mr(p.b.pd, PW_ADVISE_MR_ADVICE_PREFETCH, 0, &sge, 1));
	for (int i = 0; i < 1000; i++) {
		PWT_OK(pw_query_stats(p.b.ctx, &st, sizeof(st)));
		if (st.faults > f0)
			break;
		pwt_sleep_ms(2);
	}
	PWT_ASSERT(st.faults == f0 + 1);

	/* refused: bad advice, flags, lkey, range, empty list */
	PWT_EQ(pw_advise_mr(p.b.pd, (enum pw_advise_mr_advice)7, 0, &sge, 1), -EINVAL);
	PWT_EQ(pw_advise_mr(p.b.pd, PW_ADVISE_MR_ADVICE_PREFETCH, 0x80, &sge, 1), -EINVAL);
	PWT_EQ(pw_advise_mr(p.b.pd, PW_ADVISE_MR_ADVICE_PREFETCH, 0, &sge, 0), -EINVAL);
	sge.length = (uint32_t)len + 1;
	PWT_EQ(pw_advise_mr(p.b.pd, PW_ADVISE_MR_ADVICE_PREFETCH, 0, &sge, 1), -EINVAL);
	sge.length = 64;
	sge.lkey ^= 0x5a5a5a5a;
	PWT_EQ(pw_advise_mr(p.b.pd, PW_ADVISE_MR_ADVICE_PREFETCH, 0, &sge, 1), -EINVAL);

	pwt_img_free(&dst2);
	pwt_img_free(&dst);
	pwt_img_free(&src);
	pwt_pair_close(&p);
}

/*
 * Every other responder op on ODP pages the page table does not hold:
 * READ of data the target wrote itself (resident, but never seen by the
 * page table), READ of untouched pages (zeros), FETCH_ADD and CMP_SWAP on
 * an untouched word, a SEND into an untouched receive buffer spanning two
 * SGEs. Each faults (counted) and returns exact data.
 */
static void t_ops_fresh(const char *arg)
{
	const size_t len = 64 * PWT_KIB;
	struct pwt_pair p;
	struct pwt_img sink, src, tgt, rbuf, ssrc;
	uint64_t f0, *res;
	struct pw_sge sg[2];
	struct pw_recv_wr rwr = { 0 }, *bad;

	(void)arg;
	pwt_pair_open(&p, NULL);
	pwt_img_alloc(&sink, &p.a, 2 * len, PWT_PINNED, 0);
	pwt_img_alloc(&src, &p.b, 2 * len, PWT_ODP, 0);
	pwt_img_alloc(&tgt, &p.b, 4096, PWT_ODP, 0);
	pwt_img_alloc(&rbuf, &p.b, 2 * len, PWT_ODP, 0);
	pwt_img_alloc_src(&ssrc, &p.a, len, PWT_PINNED, 31);

	/* READ of data the target wrote locally: faults, then exact bytes */
	pwt_fill(src.buf.addr, len, 32);
	pwt_fill(src.want, len, 32);
	f0 = faults(p.b.ctx);
	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_READ, 1, sink.buf.addr,
			     (uint32_t)len, sink.buf.lkey, pwt_va(src.buf.addr),
			     src.buf.rkey, PW_SEND_SIGNALED));
	PWT_EXPECT_OK(p.a.scq, 1, PW_WC_RDMA_READ, (uint32_t)len, p.a.qp->qp_num);
	PWT_MEMEQ(sink.buf.addr, src.want, len);
	PWT_ASSERT(faults(p.b.ctx) > f0);

	/* READ of untouched pages: zeros */
	memset(sink.buf.addr, 0xee, len);
	f0 = faults(p.b.ctx);
	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_READ, 2, sink.buf.addr,
			     (uint32_t)len, sink.buf.lkey,
			     pwt_va(src.buf.addr + len), src.buf.rkey,
			     PW_SEND_SIGNALED));
	PWT_EXPECT_OK(p.a.scq, 2, PW_WC_RDMA_READ, (uint32_t)len, p.a.qp->qp_num);
	PWT_ZERO(sink.buf.addr, len);
	PWT_ASSERT(faults(p.b.ctx) > f0);

	/* atomics on an untouched word */
	res = (uint64_t *)(void *)(sink.buf.addr + len);
	f0 = faults(p.b.ctx);
	PWT_OK(pwt_post_atomic(p.a.qp, PW_WR_ATOMIC_FETCH_AND_ADD, 3, res,
			       sink.buf.lkey, pwt_va(tgt.buf.addr + 64),
			       tgt.buf.rkey, 5, 0, PW_SEND_SIGNALED));
	PWT_EXPECT_OK(p.a.scq, 3, PW_WC_FETCH_ADD, 8, p.a.qp->qp_num);
	PWT_EQ(*res, 0u);
	PWT_ASSERT(faults(p.b.ctx) > f0);
	PWT_OK(pwt_post_atomic(p.a.qp, PW_WR_ATOMIC_CMP_AND_SWP, 4, res,
			       sink.buf.lkey, pwt_va(tgt.buf.addr + 64),
			       tgt.buf.rkey, 5, 77, PW_SEND_SIGNALED));
	PWT_EXPECT_OK(p.a.scq, 4, PW_WC_COMP_SWAP, 8, p.a.qp->qp_num);
	PWT_EQ(*res, 5u);
	{
		uint64_t v;

		memcpy(&v, tgt.buf.addr + 64, 8);
		PWT_EQ(v, 77u);
	}

	/* SEND into an untouched receive buffer, two SGEs */
	sg[0].addr = pwt_va(rbuf.buf.addr + 100);
	sg[0].length = (uint32_t)(len / 2);
	sg[0].lkey = rbuf.buf.lkey;
	sg[1].addr = pwt_va(rbuf.buf.addr + len + 300);
	sg[1].length = (uint32_t)(len / 2 + 100);
	sg[1].lkey = rbuf.buf.lkey;
	rwr.wr_id = 9;
	rwr.sg_list = sg;
	rwr.num_sge = 2;
	PWT_OK(pw_post_recv(p.b.qp, &rwr, &bad));
	f0 = faults(p.b.ctx);
	PWT_OK(pwt_post_send1(p.a.qp, PW_WR_SEND, 5, ssrc.buf.addr,
			      (uint32_t)len, ssrc.buf.lkey, 0, PW_SEND_SIGNALED));
	PWT_EXPECT_OK(p.a.scq, 5, PW_WC_SEND, (uint32_t)len, p.a.qp->qp_num);
	PWT_EXPECT_RECV(p.b.rcq, 9, PW_WC_RECV, (uint32_t)len, false, 0,
			p.b.qp->qp_num);
	PWT_MEMEQ(rbuf.buf.addr + 100, ssrc.want, len / 2);
	PWT_MEMEQ(rbuf.buf.addr + len + 300, ssrc.want + len / 2, len / 2);
	PWT_ASSERTF(faults(p.b.ctx) >= f0 + 2, "SEND over two untouched SGEs: %llu faults",
		    (unsigned long long)(faults(p.b.ctx) - f0));

	pwt_img_free(&ssrc);
	pwt_img_free(&rbuf);
	pwt_img_free(&tgt);
	pwt_img_free(&src);
	pwt_img_free(&sink);
	pwt_pair_close(&p);
}

static void drop_pair(struct pwt_pair *p)
{
	struct pwt_pair_opts o;

	memset(&o, 0, sizeof(o));
	o.b_attr.fault_policy = PW_FAULT_DROP;
	pwt_pair_open(p, &o);
}

/*
 * DROP: a WRITE into untouched ODP pages is NAKed with PAGE_FAULT, its
 * payload discarded, the pages faulted in the background; the requester
 * resends and the WRITE lands exactly once. The counters of both sides
 * show the NAK, the resent and the discarded bytes.
 */
static void t_drop_write(const char *arg)
{
	const size_t len = PWT_MIB;
	struct pwt_pair p;
	struct pwt_img src, dst;
	struct pw_stats sa, sb;

	(void)arg;
	drop_pair(&p);
	pwt_img_alloc_src(&src, &p.a, len, PWT_PINNED, 41);
	pwt_img_alloc(&dst, &p.b, len, PWT_ODP, 0);
	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 1, src.buf.addr,
			     (uint32_t)len, src.buf.lkey, pwt_va(dst.buf.addr),
			     dst.buf.rkey, PW_SEND_SIGNALED));
	PWT_EXPECT_OK(p.a.scq, 1, PW_WC_RDMA_WRITE, (uint32_t)len,
		      p.a.qp->qp_num);
	memcpy(dst.want, src.want, len);
	PWT_IMG_CHECK(&dst);
	PWT_OK(pw_query_stats(p.a.ctx, &sa, sizeof(sa)));
	PWT_OK(pw_query_stats(p.b.ctx, &sb, sizeof(sb)));
	PWT_ASSERTF(sb.naks_sent >= 1 && sa.naks_received == sb.naks_sent,
		    "NAKs sent %llu, received %llu",
		    (unsigned long long)sb.naks_sent,
		    (unsigned long long)sa.naks_received);
	PWT_ASSERT(sa.retransmitted_bytes >= len);
	PWT_ASSERT(sb.dropped_bytes >= len);
	PWT_EQ(sb.stall_ns, 0u);	/* DROP never stalls */
	pwt_img_free(&dst);
	pwt_img_free(&src);
	pwt_pair_close(&p);
}

/*
 * DROP keeps RC ordering: WRITE then SEND, four times, each WRITE into
 * fresh ODP pages (NAKed and resent, together with the SEND behind it).
 * When a SEND's receive completes, its WRITE's data must be in place.
 */
static void t_drop_order(const char *arg)
{
	enum { N = 4 };
	const size_t len = 256 * PWT_KIB;
	struct pwt_pair p;
	struct pwt_img src, dst, msg, rbuf;

	(void)arg;
	drop_pair(&p);
	pwt_img_alloc_src(&src, &p.a, N * len, PWT_PINNED, 42);
	pwt_img_alloc_src(&msg, &p.a, 64, PWT_PINNED, 43);
	pwt_img_alloc(&dst, &p.b, N * len, PWT_ODP, 0);
	pwt_img_alloc(&rbuf, &p.b, N * 64, PWT_PINNED, 0);
	for (int i = 0; i < N; i++)
		PWT_OK(pwt_post_recv1(p.b.qp, (uint64_t)i, rbuf.buf.addr + i * 64,
				      64, rbuf.buf.lkey));
	for (int i = 0; i < N; i++) {
		PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 100 + (uint64_t)i,
				     src.buf.addr + i * len, (uint32_t)len,
				     src.buf.lkey, pwt_va(dst.buf.addr + i * len),
				     dst.buf.rkey, 0));
		PWT_OK(pwt_post_send1(p.a.qp, PW_WR_SEND, 200 + (uint64_t)i,
				      msg.buf.addr, 64, msg.buf.lkey, 0,
				      PW_SEND_SIGNALED));
	}
	for (int i = 0; i < N; i++) {
		PWT_EXPECT_RECV(p.b.rcq, (uint64_t)i, PW_WC_RECV, 64, false, 0,
				p.b.qp->qp_num);
		/* the WRITE posted before this SEND has landed, all of it */
		PWT_MEMEQ(dst.buf.addr + i * len, src.want + i * len, len);
	}
	for (int i = 0; i < N; i++)
		PWT_EXPECT_OK(p.a.scq, 200 + (uint64_t)i, PW_WC_SEND, 64,
			      p.a.qp->qp_num);
	memcpy(dst.want, src.want, N * len);
	PWT_IMG_CHECK(&dst);
	for (int i = 0; i < N; i++)
		PWT_MEMEQ(rbuf.buf.addr + i * 64, msg.want, 64);
	pwt_img_free(&rbuf);
	pwt_img_free(&dst);
	pwt_img_free(&msg);
	pwt_img_free(&src);
	pwt_pair_close(&p);
}

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

static size_t resident_pages(const uint8_t *p, size_t len)
{
	unsigned char vec[256];
	size_t n = 0;

	for (size_t off = 0; off < len; off += sizeof(vec) * 4096) {
		size_t c = len - off < sizeof(vec) * 4096 ? len - off : sizeof(vec) * 4096;

		PWT_OK(mincore((void *)(p + off), c, vec) ? -errno : 0);
		for (size_t i = 0; i < (c + 4095) / 4096; i++)
			n += vec[i] & 1;
	}
	return n;
}

/*
 * Pages valid in the page table, then swapped out behind its back
 * (MADV_PAGEOUT, zram swap set up by tests/scripts/with_zram_swap.sh): a
 * large WRITE there must not be placed by the progress thread into
 * non-resident pages; the residency check sends it to the worker, which
 * swaps them in. The data lands exactly.
 */
static void t_swapped_write(const char *arg)
{
	const size_t len = PWT_MIB;
	struct pwt_pair p;
	struct pwt_img src, dst;
	uint64_t f0, maj0;

	(void)arg;
	pwt_pair_open(&p, NULL);
	pwt_img_alloc_src(&src, &p.a, len, PWT_PINNED, 61);
	pwt_img_alloc(&dst, &p.b, len, PWT_ODP, 0);
	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 1, src.buf.addr,
			     (uint32_t)len, src.buf.lkey, pwt_va(dst.buf.addr),
			     dst.buf.rkey, PW_SEND_SIGNALED));
	PWT_EXPECT_OK(p.a.scq, 1, PW_WC_RDMA_WRITE, (uint32_t)len, p.a.qp->qp_num);
	if (madvise(dst.buf.addr, len, MADV_PAGEOUT) ||
	    resident_pages(dst.buf.addr, len) == len / 4096) {
		pwt_skip_part("MADV_PAGEOUT paged nothing out (no swap? run under tests/scripts/with_zram_swap.sh)");
		goto out;
	}
	printf("%zu of %zu pages resident after MADV_PAGEOUT\n",
	       resident_pages(dst.buf.addr, len), len / 4096);
	f0 = faults(p.b.ctx);
	maj0 = atomic_load(&p.b.ctx->faults.stats.major);
	pwt_fill(src.buf.addr, len, 62);
	pwt_fill(src.want, len, 62);
	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 2, src.buf.addr,
			     (uint32_t)len, src.buf.lkey, pwt_va(dst.buf.addr),
			     dst.buf.rkey, PW_SEND_SIGNALED));
	PWT_EXPECT_OK(p.a.scq, 2, PW_WC_RDMA_WRITE, (uint32_t)len, p.a.qp->qp_num);
	memcpy(dst.want, src.want, len);
	PWT_IMG_CHECK(&dst);
	PWT_ASSERTF(faults(p.b.ctx) > f0,
		    "a WRITE into swapped-out pages took no fault: the progress thread placed it");
	printf("major faults in the worker: %llu\n",
	       (unsigned long long)(atomic_load(&p.b.ctx->faults.stats.major) - maj0));
out:
	pwt_img_free(&dst);
	pwt_img_free(&src);
	pwt_pair_close(&p);
}

/*
 * Local ODP: the requester's own ODP pages not in its page table are
 * faulted before they are read (a WRITE or SEND source the application
 * wrote, never seen by the page table; a never-touched source) or written
 * (a READ sink). The data is exact; the requester's context counts the
 * faults.
 */
static void t_local_odp(const char *arg)
{
	const size_t len = 256 * PWT_KIB;
	struct pwt_pair p;
	struct pwt_img src, zsrc, dst, sink, tsrc, rb;
	uint64_t f0;

	(void)arg;
	pwt_pair_open(&p, NULL);
	pwt_img_alloc(&src, &p.a, len, PWT_ODP, 0);
	pwt_img_alloc(&zsrc, &p.a, len, PWT_ODP, 0);
	pwt_img_alloc(&sink, &p.a, len, PWT_ODP, 0);
	pwt_img_alloc(&dst, &p.b, 2 * len, PWT_PINNED, 0);
	pwt_img_alloc_src(&tsrc, &p.b, len, PWT_PINNED, 71);
	pwt_img_alloc(&rb, &p.b, len, PWT_PINNED, 0);

	/* WRITE from a source the application wrote itself */
	pwt_fill(src.buf.addr, len, 72);
	pwt_fill(src.want, len, 72);
	f0 = faults(p.a.ctx);
	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 1, src.buf.addr,
			     (uint32_t)len, src.buf.lkey, pwt_va(dst.buf.addr),
			     dst.buf.rkey, PW_SEND_SIGNALED));
	PWT_EXPECT_OK(p.a.scq, 1, PW_WC_RDMA_WRITE, (uint32_t)len, p.a.qp->qp_num);
	PWT_MEMEQ(dst.buf.addr, src.want, len);
	PWT_ASSERTF(faults(p.a.ctx) > f0, "the WRITE's ODP source took no local fault");

	/* WRITE from a never-touched source: zeros */
	memset(dst.buf.addr + len, 0x5a, len);
	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 2, zsrc.buf.addr,
			     (uint32_t)len, zsrc.buf.lkey,
			     pwt_va(dst.buf.addr + len), dst.buf.rkey,
			     PW_SEND_SIGNALED));
	PWT_EXPECT_OK(p.a.scq, 2, PW_WC_RDMA_WRITE, (uint32_t)len, p.a.qp->qp_num);
	PWT_ZERO(dst.buf.addr + len, len);

	/* SEND from the ODP source (now in the page table: no new fault) */
	f0 = faults(p.a.ctx);
	PWT_OK(pwt_post_recv1(p.b.qp, 3, rb.buf.addr, (uint32_t)len, rb.buf.lkey));
	PWT_OK(pwt_post_send1(p.a.qp, PW_WR_SEND, 3, src.buf.addr, (uint32_t)len,
			      src.buf.lkey, 0, PW_SEND_SIGNALED));
	PWT_EXPECT_OK(p.a.scq, 3, PW_WC_SEND, (uint32_t)len, p.a.qp->qp_num);
	PWT_EXPECT_RECV(p.b.rcq, 3, PW_WC_RECV, (uint32_t)len, false, 0,
			p.b.qp->qp_num);
	PWT_MEMEQ(rb.buf.addr, src.want, len);
	PWT_EQ(faults(p.a.ctx), f0);

	/* READ into a never-touched ODP sink */
	f0 = faults(p.a.ctx);
	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_READ, 4, sink.buf.addr,
			     (uint32_t)len, sink.buf.lkey, pwt_va(tsrc.buf.addr),
			     tsrc.buf.rkey, PW_SEND_SIGNALED));
	PWT_EXPECT_OK(p.a.scq, 4, PW_WC_RDMA_READ, (uint32_t)len, p.a.qp->qp_num);
	PWT_MEMEQ(sink.buf.addr, tsrc.want, len);
	PWT_ASSERTF(faults(p.a.ctx) > f0, "the READ's ODP sink took no local fault");

	pwt_img_free(&rb);
	pwt_img_free(&tsrc);
	pwt_img_free(&dst);
	pwt_img_free(&sink);
	pwt_img_free(&zsrc);
	pwt_img_free(&src);
	pwt_pair_close(&p);
}

/*
 * No head-of-line blocking across QPs (STALL stops only the faulting QP):
 * QP A's 8 MiB WRITE into untouched ODP memory needs a long fault (two
 * 4 MiB steps of 1.5 s each: PW_FAULT_DELAY_MS makes every fault the
 * worker resolves as slow as a disk read, so that the test does not
 * depend on how fast this machine zeroes pages); meanwhile 100 small
 * WRITEs on QP B into resident memory of the same target context all
 * complete, and before A's.
 */
static void t_no_hol(const char *arg)
{
	const size_t big = 8 * PWT_MIB, small = 64;
	struct pwt_pair p;
	struct pwt_img bsrc, bdst, ssrc, sdst;
	struct pw_qp *qa, *qb;
	struct pw_wc wc;
	uint64_t t0, tb;

	(void)arg;
	setenv("PW_FAULT_DELAY_MS", "1500", 1);
	pwt_pair_open(&p, NULL);
	unsetenv("PW_FAULT_DELAY_MS");
	pwt_img_alloc_src(&bsrc, &p.a, big, PWT_PINNED, 81);
	pwt_img_alloc(&bdst, &p.b, big, PWT_ODP, 0);
	pwt_img_alloc_src(&ssrc, &p.a, small, PWT_PINNED, 82);
	pwt_img_alloc(&sdst, &p.b, 4096, PWT_PINNED, 0);
	pwt_connect_qp(&p.a, &p.b, p.l, &p.a.attr, &p.b.attr, &qa, &qb);

	t0 = pwt_now_ms();
	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 1, bsrc.buf.addr,
			     (uint32_t)big, bsrc.buf.lkey, pwt_va(bdst.buf.addr),
			     bdst.buf.rkey, PW_SEND_SIGNALED));
	for (int i = 0; i < 100; i++) {
		PWT_OK(pwt_post_rdma(qa, PW_WR_RDMA_WRITE, 100 + (uint64_t)i,
				     ssrc.buf.addr, (uint32_t)small, ssrc.buf.lkey,
				     pwt_va(sdst.buf.addr + (size_t)(i % 32) * small),
				     sdst.buf.rkey, PW_SEND_SIGNALED));
		PWT_WAIT_WC(p.a.scq, &wc);
		PWT_ASSERTF(wc.wr_id == 100 + (uint64_t)i && wc.status == PW_WC_SUCCESS,
			    "small WRITE %d on QP B: wr_id %llu status %s (QP A's big WRITE completed first: %s)",
			    i, (unsigned long long)wc.wr_id,
			    pw_wc_status_str(wc.status),
			    wc.wr_id == 1 ? "yes" : "no");
	}
	tb = pwt_now_ms() - t0;
	PWT_EXPECT_OK(p.a.scq, 1, PW_WC_RDMA_WRITE, (uint32_t)big, p.a.qp->qp_num);
	printf("QP B: 100 small WRITEs in %llu ms while QP A's 8 MiB fault was pending; A done after %llu ms\n",
	       (unsigned long long)tb, (unsigned long long)(pwt_now_ms() - t0));
	PWT_ASSERTF(pwt_now_ms() - t0 >= 1500, "the slow fault took no time");
	PWT_MEMEQ(sdst.buf.addr, ssrc.want, small);
	memcpy(bdst.want, bsrc.want, big);
	PWT_IMG_CHECK(&bdst);
	PWT_OK(pw_destroy_qp(qa));
	PWT_OK(pw_destroy_qp(qb));
	pwt_img_free(&sdst);
	pwt_img_free(&ssrc);
	pwt_img_free(&bdst);
	pwt_img_free(&bsrc);
	pwt_pair_close(&p);
}

/*
 * Review findings, as tests:
 * - a 1 MiB WRITE into a read-only part of an ODP MR ends with a remote
 *   access error (MADV_POPULATE_WRITE's EINVAL is "no access", and the
 *   residency check does not send the op round again);
 * - a WRITE to the last page of the address space through an implicit
 *   key ends with a remote access error, under both policies;
 * - twelve READs from separate fresh regions of a DROP responder all
 *   succeed (READ completions reset the PAGE_FAULT retry budget).
 */
static void t_review_edges(const char *arg)
{
	const size_t len = PWT_MIB;
	struct pwt_pair p;
	struct pwt_img src, sink;
	struct pw_mr *mr, *imr;
	uint8_t *ro;

	(void)arg;
	for (int pol = PW_FAULT_STALL; pol <= PW_FAULT_DROP; pol++) {
		struct pwt_pair_opts o;

		memset(&o, 0, sizeof(o));
		o.b_attr.fault_policy = (uint32_t)pol;
		pwt_pair_open(&p, &o);
		pwt_img_alloc_src(&src, &p.a, len, PWT_PINNED, 91);
		ro = pwt_map(len);
		mr = pw_reg_mr(p.b.pd, ro, len, PWT_ACCESS_ALL | PW_ACCESS_ON_DEMAND);
		PWT_NONNULL(mr);
		PWT_OK(mprotect(ro, len, PROT_READ) ? -errno : 0);
		PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 1, src.buf.addr,
				     (uint32_t)len, src.buf.lkey, pwt_va(ro),
				     mr->rkey, PW_SEND_SIGNALED));
		PWT_EXPECT_ERR(p.a.scq, 1, PW_WC_REM_ACCESS_ERR, p.a.qp->qp_num);
		PWT_OK(pw_dereg_mr(mr));
		pwt_unmap(ro, len);
		pwt_img_free(&src);
		pwt_pair_close(&p);

		pwt_pair_open(&p, &o);
		pwt_img_alloc_src(&src, &p.a, 64, PWT_PINNED, 92);
		imr = pw_reg_mr(p.b.pd, NULL, SIZE_MAX,
				PWT_ACCESS_ALL | PW_ACCESS_ON_DEMAND);
		PWT_NONNULL(imr);
		PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 2, src.buf.addr, 16,
				     src.buf.lkey, 0xFFFFFFFFFFFFFF00ull, imr->rkey,
				     PW_SEND_SIGNALED));
		PWT_EXPECT_ERR(p.a.scq, 2, PW_WC_REM_ACCESS_ERR, p.a.qp->qp_num);
		PWT_OK(pw_dereg_mr(imr));
		pwt_img_free(&src);
		pwt_pair_close(&p);
	}

	drop_pair(&p);
	pwt_img_alloc(&src, &p.b, 24 * 128 * PWT_KIB, PWT_ODP, 0);
	pwt_img_alloc(&sink, &p.a, 128 * PWT_KIB, PWT_PINNED, 0);
	for (int i = 0; i < 12; i++) {
		/* stride of two sizes: no fault-around */
		PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_READ, 10 + (uint64_t)i,
				     sink.buf.addr, 128 * PWT_KIB, sink.buf.lkey,
				     pwt_va(src.buf.addr + (size_t)i * 256 * PWT_KIB),
				     src.buf.rkey, PW_SEND_SIGNALED));
		PWT_EXPECT_OK(p.a.scq, 10 + (uint64_t)i, PW_WC_RDMA_READ,
			      128 * PWT_KIB, p.a.qp->qp_num);
		PWT_ZERO(sink.buf.addr, 128 * PWT_KIB);
	}
	pwt_img_free(&sink);
	pwt_img_free(&src);
	pwt_pair_close(&p);
}

/* ---- pw_mr_invalidate --------------------------------------------------- */

struct inval_arg {
	struct pw_mr *mr;
	size_t len;
	atomic_bool stop;
	uint64_t calls;
	int err;
};

static void *invalidator(void *p)
{
	struct inval_arg *ia = p;
	uint64_t r = 0x9e3779b97f4a7c15ull;

	while (!atomic_load(&ia->stop)) {
		uint64_t off, len;
		int ret;

		r ^= r << 13;
		r ^= r >> 7;
		r ^= r << 17;
		off = r % ia->len;
		len = 1 + (r >> 20) % (ia->len - off);
		ret = pw_mr_invalidate(ia->mr, off, len);
		if (ret && !ia->err)
			ia->err = ret;
		ia->calls++;
	}
	return NULL;
}

/*
 * Faults racing explicit invalidations (the page table's sequence
 * counter): one thread invalidates random ranges of a fresh ODP target
 * without pause while 300 WRITEs of 4 KiB..1 MiB land at random offsets.
 * Every WRITE succeeds, every byte is exact, and the invalidated pages
 * were faulted in again (more faults than the first pass needs).
 */
static void t_invalidate_race(const char *arg)
{
	const size_t len = 8 * PWT_MIB;
	struct pwt_pair p;
	struct pwt_img src, dst;
	struct inval_arg ia;
	pthread_t th;
	uint64_t r = 12345, f0;

	(void)arg;
	pwt_pair_open(&p, NULL);
	pwt_img_alloc_src(&src, &p.a, len, PWT_PINNED, 61);
	pwt_img_alloc(&dst, &p.b, len, PWT_ODP, 0);
	memset(&ia, 0, sizeof(ia));
	ia.mr = dst.buf.mr;
	ia.len = len;
	f0 = faults(p.b.ctx);
	PWT_EQ(pthread_create(&th, NULL, invalidator, &ia), 0);
	for (uint64_t i = 0; i < 300; i++) {
		size_t l, off;

		r = r * 6364136223846793005ull + 1442695040888963407ull;
		l = (size_t)4096 << ((r >> 33) % 9);	/* 4 KiB .. 1 MiB */
		off = (size_t)((r >> 13) % (len - l + 1));
		PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, i,
				     src.buf.addr + off, (uint32_t)l, src.buf.lkey,
				     pwt_va(dst.buf.addr + off), dst.buf.rkey,
				     PW_SEND_SIGNALED));
		PWT_EXPECT_OK(p.a.scq, i, PW_WC_RDMA_WRITE, (uint32_t)l,
			      p.a.qp->qp_num);
		memcpy(dst.want + off, src.want + off, l);
	}
	atomic_store(&ia.stop, true);
	PWT_EQ(pthread_join(th, NULL), 0);
	PWT_EQ(ia.err, 0);
	PWT_ASSERTF(ia.calls > 300, "only %llu invalidations ran",
		    (unsigned long long)ia.calls);
	PWT_IMG_CHECK(&dst);
	PWT_ASSERTF(faults(p.b.ctx) - f0 > 10,
		    "%llu faults: invalidated pages were not faulted again",
		    (unsigned long long)(faults(p.b.ctx) - f0));
	pwt_img_free(&dst);
	pwt_img_free(&src);
	pwt_pair_close(&p);
}

/*
 * pw_mr_invalidate() before replacing a mapping of a FOLLOW_VA MR: the
 * next WRITE faults again and lands in the new pages (zeros elsewhere),
 * never in the old ones; bad arguments are EINVAL.
 */
static void t_invalidate_remap(const char *arg)
{
	const size_t len = PWT_MIB, pg = 4096;
	struct pwt_pair p;
	struct pwt_img src, dst, pin;
	uint8_t *old, *va;
	uint64_t f0;

	(void)arg;
	pwt_pair_open(&p, NULL);
	pwt_img_alloc_src(&src, &p.a, len, PWT_PINNED, 71);
	/* following the address: the replaced mapping is reachable again */
	pwt_img_alloc_access(&dst, &p.b, len, PWT_ACCESS_ALL | PW_ACCESS_ODP_FOLLOW_VA,
			     PWT_ODP, 0);
	pwt_img_alloc(&pin, &p.b, pg, PWT_PINNED, 0);
	va = dst.buf.addr;
	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 1, src.buf.addr,
			     (uint32_t)len, src.buf.lkey, pwt_va(va),
			     dst.buf.rkey, PW_SEND_SIGNALED));
	PWT_EXPECT_OK(p.a.scq, 1, PW_WC_RDMA_WRITE, (uint32_t)len,
		      p.a.qp->qp_num);
	PWT_ASSERT(memcmp(va, src.want, len) == 0);

	/* keep the old pages reachable elsewhere, then replace the mapping */
	old = mremap(va, len, len, MREMAP_MAYMOVE | MREMAP_DONTUNMAP);
	if (old == MAP_FAILED) {
		/* older kernels: keep a copy to compare against instead */
		old = pwt_map(len);
		memcpy(old, va, len);
	}
	PWT_OK(pw_mr_invalidate(dst.buf.mr, 0, len));
	PWT_ASSERT(mmap(va, len, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == va);
	f0 = faults(p.b.ctx);
	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 2, src.buf.addr + pg,
			     (uint32_t)pg, src.buf.lkey, pwt_va(va + 3 * pg),
			     dst.buf.rkey, PW_SEND_SIGNALED));
	PWT_EXPECT_OK(p.a.scq, 2, PW_WC_RDMA_WRITE, (uint32_t)pg,
		      p.a.qp->qp_num);
	PWT_ASSERTF(faults(p.b.ctx) > f0, "no fault after pw_mr_invalidate");
	memset(dst.want, 0, len);
	memcpy(dst.want + 3 * pg, src.want + pg, pg);
	PWT_IMG_CHECK(&dst);
	/* the old pages kept what they had */
	PWT_ASSERT(memcmp(old, src.want, len) == 0);
	munmap(old, len);

	PWT_EQ(pw_mr_invalidate(NULL, 0, 1), -EINVAL);
	PWT_EQ(pw_mr_invalidate(dst.buf.mr, 0, 0), -EINVAL);
	PWT_EQ(pw_mr_invalidate(dst.buf.mr, len, 1), -EINVAL);
	PWT_EQ(pw_mr_invalidate(dst.buf.mr, 1, len), -EINVAL);
	PWT_EQ(pw_mr_invalidate(dst.buf.mr, UINT64_MAX, 2), -EINVAL);
	PWT_EQ(pw_mr_invalidate(pin.buf.mr, 0, pg), -EINVAL);
	PWT_OK(pw_mr_invalidate(dst.buf.mr, len - 1, 1));
	pwt_img_free(&pin);
	pwt_img_free(&dst);
	pwt_img_free(&src);
	pwt_pair_close(&p);
}

static const struct pwt_case cases[] = {
	{ "review_edges", t_review_edges },
	{ "no_hol", t_no_hol },
	{ "local_odp", t_local_odp },
	{ "swapped_write", t_swapped_write },
	{ "drop_write", t_drop_write },
	{ "drop_order", t_drop_order },
	{ "drop_hole", t_drop_hole },
	{ "ops_fresh", t_ops_fresh },
	{ "advise", t_advise },
	{ "write_fresh", t_write_fresh },
	{ "write_inline", t_write_inline },
	{ "write_stream", t_write_stream },
	{ "write_hole", t_write_hole },
	{ "write_qps", t_write_qps },
	{ "write_implicit", t_write_implicit },
	{ "invalidate_race", t_invalidate_race },
	{ "invalidate_remap", t_invalidate_remap },
};

int main(int argc, char **argv)
{
	return pwt_main(argc, argv, cases, PWT_ARRAY_SIZE(cases));
}
