/* SPDX-License-Identifier: MIT */
/*
 * pagewire-perf inval_lat: how long a peer goes on believing in a mapping
 * that is gone. The time from the target's madvise(MADV_DONTNEED) or
 * munmap() of a page of a registered ODP MR returning to the peer's
 * requester having applied the INVALIDATE for it (the time its engine
 * recorded, pw_stats.notify_last_rx_ns; CLOCK_MONOTONIC is one clock for
 * the whole machine).
 *
 * One process, two contexts connected over 127.0.0.1, like `reg` a local
 * test: the target (fault policy NOTIFY) and the peer. One page per
 * sample, each waited for before the next, so nothing coalesces. A sample
 * the peer has not applied after 1 s counts as missed. The path measured:
 * the kernel's userfaultfd event, the notifier's handler, the target's
 * engine, TCP on loopback, the peer's engine.
 *
 * JSON, one line per event: test, event, iters, lat_p50_us, lat_p99_us,
 * lat_max_us, missed.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "perf.h"
#include "tool_util.h"

#define INV_PG		4096u
#define INV_DEFAULT_ITERS 1000u
#define INV_WAIT_NS	1000000000ull

struct inv_accept {
	struct pw_listener *l;
	struct pw_pd *pd;
	struct pw_qp_init_attr attr;
	struct pw_qp *qp;
};

static void *accept_main(void *arg)
{
	struct inv_accept *a = arg;
	struct pw_conn_param param = { .timeout_ms = 10000 };

	a->qp = pw_accept(a->l, a->pd, &a->attr, &param);
	return NULL;
}

/* One 8-byte READ of @mr from @qp, waited for. Return 0 or -1. */
static int touch_key(struct pw_pd *pd, struct pw_qp *qp, struct pw_cq *cq,
		     const struct pw_mr *mr)
{
	uint64_t sink = 0;
	struct pw_mr *smr = pw_reg_mr(pd, &sink, sizeof(sink), PW_ACCESS_LOCAL_WRITE);
	struct pw_sge sge = { .addr = (uint64_t)(uintptr_t)&sink, .length = 8 };
	struct pw_send_wr wr = { .sg_list = &sge, .num_sge = 1,
				 .opcode = PW_WR_RDMA_READ,
				 .send_flags = PW_SEND_SIGNALED };
	struct pw_send_wr *bad;
	struct pw_wc wc;
	uint64_t end = tool_now_ns() + 10000000000ull;
	int n = 0;

	if (!smr)
		return -1;
	sge.lkey = smr->lkey;
	wr.wr.rdma.remote_addr = (uint64_t)(uintptr_t)mr->addr;
	wr.wr.rdma.rkey = mr->rkey;
	if (pw_post_send(qp, &wr, &bad) == 0)
		while ((n = pw_poll_cq(cq, 1, &wc)) == 0 && tool_now_ns() < end)
			sched_yield();
	pw_dereg_mr(smr);
	return n == 1 && wc.status == PW_WC_SUCCESS ? 0 : -1;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t received(struct pw_context *ctx, uint64_t *last_ns)
{
	struct pw_stats st;

	if (pw_query_stats(ctx, &st, sizeof(st)))
		return 0;
	*last_ns = st.notify_last_rx_ns;
	return st.notifications_received;
}

/* One event kind over @n pages of @buf. Return 0 or a PERF_EXIT_* code. */
static int measure(struct pw_context *peer, uint8_t *buf, unsigned int n,
		   bool unmap, bool json)
{
	int64_t *lat = calloc(n, sizeof(*lat));
	unsigned int got = 0, missed = 0;
	const char *ev = unmap ? "munmap" : "madvise";

	if (!lat)
		return PERF_EXIT_FAIL;
	for (unsigned int i = 0; i < n; i++) {
		uint8_t *pg = buf + (size_t)i * INV_PG;
		uint64_t last, prev = received(peer, &last), t1, end;
		int rc = unmap ? munmap(pg, INV_PG) : madvise(pg, INV_PG, MADV_DONTNEED);

		t1 = tool_now_ns();
		if (rc) {
			perf_fail("inval_lat: %s: %s", ev, strerror(errno));
			free(lat);
			return PERF_EXIT_FAIL;
		}
		end = t1 + INV_WAIT_NS;
		while (received(peer, &last) == prev && tool_now_ns() < end)
			sched_yield();
		if (received(peer, &last) == prev) {
			missed++;
			continue;
		}
		/* applied before the call returned to us: 0 */
		lat[got++] = last > t1 ? (int64_t)(last - t1) : 0;
	}
	qsort(lat, got, sizeof(*lat), cmp_i64);
	if (!got) {
		perf_fail("inval_lat: no INVALIDATE reached the peer (%u missed)", missed);
		free(lat);
		return PERF_EXIT_FAIL;
	}
	{
		double p50 = (double)lat[got / 2] / 1000.0;
		double p99 = (double)lat[(size_t)((got - 1) * 0.99)] / 1000.0;
		double max = (double)lat[got - 1] / 1000.0;

		if (json)
			printf("{\"test\":\"inval_lat\",\"event\":\"%s\",\"iters\":%u,"
			       "\"lat_p50_us\":%.3f,\"lat_p99_us\":%.3f,"
			       "\"lat_max_us\":%.3f,\"missed\":%u}\n",
			       ev, got, p50, p99, max, missed);
		else
			printf(" %-8s %-8u %-12.3f %-12.3f %-12.3f %u\n", ev, got,
			       p50, p99, max, missed);
	}
	fflush(stdout);
	free(lat);
	return 0;
}

int perf_inval_run(const struct perf_opts *o)
{
	struct pw_context_attr tattr = { .fault_policy = PW_FAULT_NOTIFY };
	struct pw_context *tctx = NULL, *pctx = NULL;
	struct pw_pd *tpd = NULL, *ppd = NULL;
	struct pw_cq *tcq = NULL, *pcq = NULL;
	struct pw_listener *l = NULL;
	struct inv_accept acc = { 0 };
	struct pw_qp_init_attr pattr = { 0 };
	struct pw_qp *pqp = NULL;
	struct pw_mr *mr = NULL;
	struct pw_stats st;
	unsigned int n = o->iters_set ? (unsigned int)o->iters : INV_DEFAULT_ITERS;
	size_t len = (size_t)2 * n * INV_PG;
	uint8_t *buf = MAP_FAILED;
	pthread_t th;
	int ret = PERF_EXIT_FAIL;

	tctx = pw_open(&tattr);
	pctx = pw_open(NULL);
	if (!tctx || !pctx) {
		perf_fail("pw_open: %s", strerror(errno));
		goto out;
	}
	if (pw_query_stats(tctx, &st, sizeof(st)) == 0 && st.notifier_off) {
		fprintf(stderr, PERF_PROG ": inval_lat: SKIP: the notifier is off "
			"(no userfaultfd here): munmap and madvise are not noticed\n");
		ret = PERF_EXIT_SKIP;
		goto out;
	}
	tpd = pw_alloc_pd(tctx);
	ppd = pw_alloc_pd(pctx);
	tcq = tpd ? pw_create_cq(tctx, 16, NULL, NULL, 0) : NULL;
	pcq = ppd ? pw_create_cq(pctx, 16, NULL, NULL, 0) : NULL;
	l = tcq ? pw_listen(tctx, "127.0.0.1", 0) : NULL;
	buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		   -1, 0);
	if (!pcq || !l || buf == MAP_FAILED) {
		perf_fail("setup: %s (%s)", strerror(errno), pw_last_error());
		goto out;
	}
	memset(buf, 1, len);
	mr = pw_reg_mr(tpd, buf, len, PW_ACCESS_LOCAL_WRITE | PW_ACCESS_REMOTE_WRITE |
		       PW_ACCESS_REMOTE_READ | PW_ACCESS_ON_DEMAND);
	if (!mr) {
		perf_fail("pw_reg_mr: %s (%s)", strerror(errno), pw_last_error());
		goto out;
	}
	acc.l = l;
	acc.pd = tpd;
	acc.attr.send_cq = acc.attr.recv_cq = tcq;
	if (pthread_create(&th, NULL, accept_main, &acc)) {
		perf_fail("pthread_create failed");
		goto out;
	}
	pattr.send_cq = pattr.recv_cq = pcq;
	pqp = pw_connect(ppd, &pattr, "127.0.0.1", pw_listener_port(l), NULL);
	pthread_join(th, NULL);
	if (!pqp || !acc.qp) {
		perf_fail("connect over 127.0.0.1 failed: %s", pw_last_error());
		goto out;
	}
	/*
	 * The peer uses the key once: a target tells only peers that have
	 * (docs/wire.md section 14, "Who is told").
	 */
	if (touch_key(ppd, pqp, pcq, mr)) {
		perf_fail("first READ of the region failed: %s", pw_last_error());
		goto out;
	}
	if (!o->json)
		printf(" %-8s %-8s %-12s %-12s %-12s %s\n", "event", "iters",
		       "p50 [us]", "p99 [us]", "max [us]", "missed");
	ret = measure(pctx, buf, n, false, o->json);
	if (!ret)
		ret = measure(pctx, buf + (size_t)n * INV_PG, n, true, o->json);
out:
	if (pqp)
		pw_destroy_qp(pqp);
	if (acc.qp)
		pw_destroy_qp(acc.qp);
	if (mr)
		pw_dereg_mr(mr);
	if (buf != MAP_FAILED)
		munmap(buf, len);
	if (l)
		pw_close_listener(l);
	if (tcq)
		pw_destroy_cq(tcq);
	if (pcq)
		pw_destroy_cq(pcq);
	if (tpd)
		pw_dealloc_pd(tpd);
	if (ppd)
		pw_dealloc_pd(ppd);
	if (tctx)
		pw_close(tctx);
	if (pctx)
		pw_close(pctx);
	return ret;
}
