/* SPDX-License-Identifier: MIT */
/*
 * The NOTIFY protocol (docs/wire.md section 14), each case with
 * real peers over TCP: INVALIDATE reaches the peers of the MR's PD and no
 * other; a FAULT_IN for unmapped memory fails cleanly; a peer without the
 * protocol falls back; an INVALIDATE storm keeps the requester bounded and
 * loses no op. Data is compared byte for byte, statuses exactly.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pwtest.h"

#define PG 4096u

#if defined(__SANITIZE_ADDRESS__)
#define NT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NT_ASAN 1
#endif
#endif
#ifndef NT_ASAN
#define NT_ASAN 0
#endif

/* Wait (up to 10 s) until @ctx has received at least @n notifications. */
static void wait_received(struct pw_context *ctx, uint64_t n)
{
	for (int i = 0; i < 5000; i++) {
		if (pwt_stats(ctx).notifications_received >= n)
			return;
		pwt_sleep_ms(2);
	}
	PWT_ASSERTF(0, "%llu notifications received, want >= %llu",
		    (unsigned long long)pwt_stats(ctx).notifications_received,
		    (unsigned long long)n);
}

static struct pwt_pair_opts notify_opts(void)
{
	struct pwt_pair_opts o;

	memset(&o, 0, sizeof(o));
	o.b_attr.fault_policy = PW_FAULT_NOTIFY;	/* b is the target */
	return o;
}

/* A WRITE of @len bytes from @src + @off to @dst + @off, waited for. */
static void write_at(struct pwt_pair *p, struct pwt_img *src, struct pwt_img *dst,
		     size_t off, uint32_t len, uint64_t wr_id)
{
	PWT_OK(pwt_post_rdma(p->a.qp, PW_WR_RDMA_WRITE, wr_id, src->buf.addr + off,
			     len, src->buf.lkey, pwt_va(dst->buf.addr + off),
			     dst->buf.rkey, PW_SEND_SIGNALED));
	PWT_EXPECT_OK(p->a.scq, wr_id, PW_WC_RDMA_WRITE, len, p->a.qp->qp_num);
	memcpy(dst->want + off, src->want + off, len);
}

/*
 * The target invalidates part of an MR of PD 1: the two peers connected to
 * PD 1 that used its key are told; a PD 1 peer that never used it is not
 * (an INVALIDATE would hand it the key: docs/security.md), nor is the
 * peer connected to PD 2. A WRITE into the range
 * asks first (FAULT_IN, VALIDATE), lands, and the range is valid again.
 */
static void t_reach_pd(const char *arg)
{
	const size_t len = 64 * PG;
	struct pwt_pair_opts o = notify_opts();
	struct pwt_pair p;
	struct pwt_side c, d, e;
	struct pwt_acceptor acc;
	struct pw_qp *bc, *bd, *be;
	struct pw_pd *pd2;
	struct pwt_img src, dst;
	struct pwt_buf sink;
	struct pw_stats sa, sb;

	(void)arg;
	pwt_pair_open(&p, &o);
	pwt_side_open(&c);
	pwt_side_open(&d);
	pwt_side_open(&e);
	pd2 = pw_alloc_pd(p.b.ctx);
	PWT_NONNULL(pd2);
	/* c, e -> b in PD 1 (p.b.pd), d -> b in PD 2 */
	pwt_connect_qp(&c, &p.b, p.l, NULL, &o.b_attr, &c.qp, &bc);
	pwt_connect_qp(&e, &p.b, p.l, NULL, &o.b_attr, &e.qp, &be);
	memset(&acc, 0, sizeof(acc));
	acc.l = p.l;
	acc.pd = pd2;
	acc.attr = o.b_attr;
	acc.attr.send_cq = p.b.scq;
	acc.attr.recv_cq = p.b.rcq;
	acc.param.timeout_ms = PWT_TIMEOUT_MS;
	pwt_accept_start(&acc);
	d.attr.send_cq = d.scq;
	d.attr.recv_cq = d.rcq;
	d.qp = pw_connect(d.pd, &d.attr, "127.0.0.1", p.port, NULL);
	PWT_NONNULL(d.qp);
	bd = pwt_accept_join(&acc);
	PWT_NONNULL(bd);

	pwt_img_alloc_src(&src, &p.a, len, PWT_PINNED, 31);
	pwt_img_alloc(&dst, &p.b, len, PWT_ODP, 0);
	write_at(&p, &src, &dst, 0, (uint32_t)len, 1);	/* all resident */
	PWT_EQ(pwt_stats(p.a.ctx).fault_in_sent, 0);
	/* c uses the key too (a READ); e never does */
	pwt_buf_alloc(&sink, &c, PG, PWT_ACCESS_ALL, PWT_PINNED);
	PWT_OK(pwt_post_rdma(c.qp, PW_WR_RDMA_READ, 7, sink.addr, 64, sink.lkey,
			     pwt_va(dst.buf.addr), dst.buf.rkey, PW_SEND_SIGNALED));
	PWT_EXPECT_OK(c.scq, 7, PW_WC_RDMA_READ, 64, c.qp->qp_num);

	PWT_OK(pw_mr_invalidate(dst.buf.mr, 8 * PG, 4 * PG));
	wait_received(p.a.ctx, 1);
	wait_received(c.ctx, 1);
	pwt_sleep_ms(100);
	PWT_EQ(pwt_stats(d.ctx).notifications_received, 0);	/* PD 2: no access */
	PWT_EQ(pwt_stats(e.ctx).notifications_received, 0);	/* never had the key */
	sa = pwt_stats(p.a.ctx);
	PWT_ASSERT(sa.notify_view_ranges == 1);
	sb = pwt_stats(p.b.ctx);
	PWT_ASSERT(sb.notifications_sent >= 2);

	/* into the invalid range: FAULT_IN first, then the WRITE lands */
	pwt_fill(src.buf.addr + 9 * PG, 2 * PG, 77);
	pwt_fill(src.want + 9 * PG, 2 * PG, 77);
	write_at(&p, &src, &dst, 9 * PG, 2 * PG, 2);
	sa = pwt_stats(p.a.ctx);
	PWT_EQ(sa.fault_in_sent, 1);
	PWT_EQ(pwt_stats(p.b.ctx).fault_in_received, 1);
	/* VALIDATE cleared what was faulted; [8, 9) and [11, 12) stay invalid */
	PWT_EQ(sa.notify_view_ranges, 2);
	/* outside the invalid range: no FAULT_IN */
	write_at(&p, &src, &dst, 20 * PG, PG, 3);
	PWT_EQ(pwt_stats(p.a.ctx).fault_in_sent, 1);
	/* the rest of it: one more round */
	write_at(&p, &src, &dst, 8 * PG, 4 * PG, 4);
	sa = pwt_stats(p.a.ctx);
	PWT_EQ(sa.fault_in_sent, 2);
	PWT_EQ(sa.notify_view_ranges, 0);
	PWT_IMG_CHECK(&dst);

	pwt_img_free(&dst);
	pwt_img_free(&src);
	pwt_buf_free(&sink);
	PWT_OK(pw_destroy_qp(bc));
	PWT_OK(pw_destroy_qp(bd));
	PWT_OK(pw_destroy_qp(be));
	PWT_OK(pw_dealloc_pd(pd2));
	pwt_side_close(&c);
	pwt_side_close(&d);
	pwt_side_close(&e);
	pwt_pair_close(&p);
}

/*
 * The target unmaps part of an ODP MR (the notifier kills that range):
 * the peer is told, asks before its WRITE, gets VALIDATE with
 * REMOTE_ACCESS, sends the WRITE anyway and it fails with exactly
 * REM_ACCESS_ERR. Nothing lands anywhere.
 */
static void t_fault_in_unmapped(const char *arg)
{
	const size_t len = 16 * PG;
	struct pwt_pair_opts o = notify_opts();
	struct pwt_pair p;
	struct pwt_img src, dst;
	struct pw_stats st;

	(void)arg;
	pwt_pair_open(&p, &o);
	if (pwt_stats(p.b.ctx).notifier_off) {
		pwt_pair_close(&p);
		pwt_skip_part("no userfaultfd here: munmap is not noticed");
		return;
	}
	pwt_img_alloc_src(&src, &p.a, len, PWT_PINNED, 41);
	pwt_img_alloc(&dst, &p.b, len, PWT_ODP, 0);
	write_at(&p, &src, &dst, 0, (uint32_t)len, 1);
	PWT_ASSERT(munmap(dst.buf.addr + 4 * PG, 4 * PG) == 0);
	wait_received(p.a.ctx, 1);

	PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, 2, src.buf.addr, PG,
			     src.buf.lkey, pwt_va(dst.buf.addr + 5 * PG),
			     dst.buf.rkey, PW_SEND_SIGNALED));
	PWT_EXPECT_ERR(p.a.scq, 2, PW_WC_REM_ACCESS_ERR, p.a.qp->qp_num);
	st = pwt_stats(p.a.ctx);
	PWT_EQ(st.fault_in_sent, 1);
	PWT_EQ(pwt_stats(p.b.ctx).fault_in_received, 1);
	/* the rest of the MR kept its bytes */
	PWT_MEMEQ(dst.buf.addr, dst.want, 4 * PG);
	PWT_MEMEQ(dst.buf.addr + 8 * PG, dst.want + 8 * PG, 8 * PG);

	/* put the hole back so that the buffer unmaps as one */
	PWT_ASSERT(mmap(dst.buf.addr + 4 * PG, 4 * PG, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
		   dst.buf.addr + 4 * PG);
	pwt_img_free(&dst);
	pwt_img_free(&src);
	pwt_pair_close(&p);
}

/*
 * A peer from before the protocol (PW_CONTEXT_NO_NOTIFY): nothing is
 * sent to it, and its WRITEs into invalidated memory take the target's
 * fault as under STALL, data intact.
 */
static void t_old_peer(const char *arg)
{
	const size_t len = 32 * PG;
	struct pwt_pair_opts o = notify_opts();
	struct pwt_pair p;
	struct pwt_img src, dst;
	uint64_t f0;

	(void)arg;
	o.a_ctx.flags = PW_CONTEXT_NO_NOTIFY;
	pwt_pair_open(&p, &o);
	pwt_img_alloc_src(&src, &p.a, len, PWT_PINNED, 51);
	pwt_img_alloc(&dst, &p.b, len, PWT_ODP, 0);
	write_at(&p, &src, &dst, 0, (uint32_t)len, 1);
	f0 = pwt_stats(p.b.ctx).faults;
	PWT_OK(pw_mr_invalidate(dst.buf.mr, 0, len));
	pwt_sleep_ms(100);
	PWT_EQ(pwt_stats(p.b.ctx).notifications_sent, 0);
	PWT_EQ(pwt_stats(p.a.ctx).notifications_received, 0);

	pwt_fill(src.buf.addr, len, 52);
	pwt_fill(src.want, len, 52);
	write_at(&p, &src, &dst, 0, (uint32_t)len, 2);
	PWT_IMG_CHECK(&dst);
	PWT_EQ(pwt_stats(p.a.ctx).fault_in_sent, 0);
	PWT_ASSERT(pwt_stats(p.b.ctx).faults > f0);	/* the target faulted it back */

	pwt_img_free(&dst);
	pwt_img_free(&src);
	pwt_pair_close(&p);
}

/* ------------------------------------------------------------------ */
/* storm                                                                */
/* ------------------------------------------------------------------ */

#define STORM_RANGES	100000
#define STORM_PAGES	4096		/* 16 MiB target */

struct storm {
	struct pw_mr *mr;
	atomic_bool stop;
	atomic_int done;
	uint64_t ns;
};

static void *storm_main(void *arg)
{
	struct storm *s = arg;
	uint64_t t0 = pwt_now_us();
	uint32_t x = 12345;

	for (int i = 0; i < STORM_RANGES; i++) {
		x = x * 1103515245u + 12345u;
		PWT_OK(pw_mr_invalidate(s->mr, (uint64_t)(x % STORM_PAGES) * PG, PG));
		atomic_store_explicit(&s->done, i + 1, memory_order_relaxed);
	}
	s->ns = (pwt_now_us() - t0) * 1000;
	atomic_store(&s->stop, true);
	return NULL;
}

/*
 * 100k single-page INVALIDATEs as fast as the target can issue them (about
 * a second here) while the peer keeps 16 WRITEs in flight across the
 * region: the requester's view never exceeds its bound, its RSS does not
 * grow, every WRITE completes successfully in order, and the region ends
 * byte for byte as written.
 */
static void t_storm(const char *arg)
{
	const size_t len = (size_t)STORM_PAGES * PG;
	struct pwt_pair_opts o = notify_opts();
	struct pwt_pair p;
	struct pwt_img src, dst;
	struct storm s = { 0 };
	pthread_t th;
	uint64_t posted = 0, completed = 0, max_view = 0;
	size_t rss0, rss_max = 0;
	uint32_t x = 99;
	struct pw_stats sa, sb;

	(void)arg;
	o.a_attr.cap.max_send_wr = 64;
	pwt_pair_open(&p, &o);
	pwt_img_alloc_src(&src, &p.a, len, PWT_PINNED, 61);
	pwt_img_alloc(&dst, &p.b, len, PWT_ODP, 0);
	write_at(&p, &src, &dst, 0, (uint32_t)len, 0);	/* resident */
	completed = posted = 1;
	rss0 = pwt_rss_bytes();
	s.mr = dst.buf.mr;
	PWT_ASSERT(pthread_create(&th, NULL, storm_main, &s) == 0);

	while (!atomic_load(&s.stop) || posted < 4000) {
		struct pw_wc wc;
		struct pw_stats now;

		while (posted - completed < 16) {
			size_t off;
			uint32_t l;

			x = x * 1103515245u + 12345u;
			off = (size_t)(x % STORM_PAGES) * PG + (x >> 20) % 64;
			l = 1 + (x >> 8) % (2 * PG);
			if (off + l > len)
				l = (uint32_t)(len - off);
			PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_WRITE, posted,
					     src.buf.addr + off, l, src.buf.lkey,
					     pwt_va(dst.buf.addr + off), dst.buf.rkey,
					     PW_SEND_SIGNALED));
			memcpy(dst.want + off, src.want + off, l);
			posted++;
		}
		PWT_ASSERT(pwt_poll_wc(p.a.scq, &wc, PWT_TIMEOUT_MS) == 1);
		PWT_EQ(wc.status, PW_WC_SUCCESS);
		PWT_EQ(wc.wr_id, completed);	/* RC order, nothing lost */
		completed++;
		if (completed % 64 == 0) {
			now = pwt_stats(p.a.ctx);
			if (now.notify_view_ranges > max_view)
				max_view = now.notify_view_ranges;
			if (pwt_rss_bytes() > rss_max)
				rss_max = pwt_rss_bytes();
		}
	}
	while (completed < posted) {
		struct pw_wc wc;

		PWT_ASSERT(pwt_poll_wc(p.a.scq, &wc, PWT_TIMEOUT_MS) == 1);
		PWT_EQ(wc.status, PW_WC_SUCCESS);
		PWT_EQ(wc.wr_id, completed);
		completed++;
	}
	pthread_join(th, NULL);
	PWT_IMG_CHECK(&dst);

	sa = pwt_stats(p.a.ctx);
	sb = pwt_stats(p.b.ctx);
	printf("storm: %d invalidations in %.2f s; %llu WRITEs; target sent %llu "
	       "notifications (%llu coalesced away or dropped: %llu); requester "
	       "received %llu, sent %llu FAULT_IN; view max %llu ranges; RSS %+lld KiB\n",
	       STORM_RANGES, (double)s.ns / 1e9, (unsigned long long)completed,
	       (unsigned long long)sb.notifications_sent,
	       (unsigned long long)(STORM_RANGES - sb.notifications_sent),
	       (unsigned long long)sb.notify_dropped,
	       (unsigned long long)sa.notifications_received,
	       (unsigned long long)sa.fault_in_sent, (unsigned long long)max_view,
	       ((long long)rss_max - (long long)rss0) / 1024);
	PWT_ASSERT(max_view <= 64);		/* PW_RVIEW_MAX */
	PWT_ASSERT(sa.notify_view_ranges <= 64);
	PWT_ASSERT(sa.notifications_received > 0);
	/*
	 * RSS is the whole process (both sides) and, under ASan, the
	 * allocator's quarantine too: only a plain build can hold it to 8 MiB.
	 * The view's own bound is asserted above in every build.
	 */
	if (!NT_ASAN)
		PWT_ASSERTF(rss_max < rss0 + 8 * PWT_MIB, "requester RSS grew by %zu KiB",
			    (rss_max - rss0) / 1024);

	pwt_img_free(&dst);
	pwt_img_free(&src);
	pwt_pair_close(&p);
}

/* ------------------------------------------------------------------ */
/* budget                                                               */
/* ------------------------------------------------------------------ */

/*
 * The memory budget (4 MiB) against a 32 MiB ODP region written whole by
 * the peer: the target's page tables come back under the budget by CLOCK
 * reclaim, the peer hears of it (INVALIDATE), and a READ of the whole
 * region returns every byte written. With swap (arg "swap", run under
 * with_zram_swap.sh) MADV_PAGEOUT takes reclaimed pages out of memory;
 * without, the stats say that it could not.
 */
static void t_budget(const char *arg)
{
	const size_t len = 32 * PWT_MIB, chunk = 256 * PWT_KIB;
	const uint64_t budget = 4 * PWT_MIB;
	struct pwt_pair_opts o = notify_opts();
	struct pwt_pair p;
	struct pwt_img src, dst, sink;
	struct pw_stats sb;
	bool swap = arg && !strcmp(arg, "swap");
	uint64_t id = 1;

	o.b_ctx.mem_budget = budget;
	pwt_pair_open(&p, &o);
	pwt_img_alloc_src(&src, &p.a, len, PWT_PINNED, 71);
	pwt_img_alloc(&sink, &p.a, len, PWT_PINNED, 0);
	pwt_img_alloc(&dst, &p.b, len, PWT_ODP, 0);
	for (size_t off = 0; off < len; off += chunk)
		write_at(&p, &src, &dst, off, (uint32_t)chunk, id++);
	for (int i = 0; i < 5000; i++) {
		sb = pwt_stats(p.b.ctx);
		if (sb.resident_bytes <= budget)
			break;
		pwt_sleep_ms(2);
	}
	PWT_EQ(sb.budget_bytes, budget);
	PWT_ASSERTF(sb.resident_bytes <= budget, "page tables hold %llu bytes, budget %llu",
		    (unsigned long long)sb.resident_bytes, (unsigned long long)budget);
	PWT_ASSERT(sb.reclaimed_pages >= (len - budget) / PG);
	wait_received(p.a.ctx, 1);	/* the peer was told */
	if (swap) {
		PWT_ASSERTF(sb.reclaim_paged_out > 0, "nothing paged out (unfreed %llu)",
			    (unsigned long long)sb.reclaim_unfreed);
		PWT_EQ(sb.reclaim_no_swap, 0);
	} else if (sb.reclaim_paged_out == 0) {
		/* no swap here: reclaim invalidated, but could not free */
		PWT_ASSERT(sb.reclaim_unfreed > 0 && sb.reclaim_no_swap == 1);
	}

	/* every byte comes back, reclaimed or not */
	for (size_t off = 0; off < len; off += chunk) {
		PWT_OK(pwt_post_rdma(p.a.qp, PW_WR_RDMA_READ, id, sink.buf.addr + off,
				     (uint32_t)chunk, sink.buf.lkey,
				     pwt_va(dst.buf.addr + off), dst.buf.rkey,
				     PW_SEND_SIGNALED));
		PWT_EXPECT_OK(p.a.scq, id, PW_WC_RDMA_READ, (uint32_t)chunk,
			      p.a.qp->qp_num);
		id++;
	}
	PWT_MEMEQ(sink.buf.addr, src.want, len);
	PWT_IMG_CHECK(&dst);

	pwt_img_free(&dst);
	pwt_img_free(&sink);
	pwt_img_free(&src);
	pwt_pair_close(&p);
}

static const struct pwt_case cases[] = {
	{ "budget", t_budget },
	{ "reach_pd", t_reach_pd },
	{ "fault_in_unmapped", t_fault_in_unmapped },
	{ "old_peer", t_old_peer },
	{ "storm", t_storm },
};

int main(int argc, char **argv)
{
	return pwt_main(argc, argv, cases, PWT_ARRAY_SIZE(cases));
}
