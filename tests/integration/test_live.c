/* SPDX-License-Identifier: MIT */
/*
 * Transport liveness (docs/limits.md, "The dead-peer bound"): a peer whose
 * engine is stopped while its kernel still ACKs TCP (SIGSTOP here) fails
 * every outstanding WR within peer_timeout_ms, whatever the opcode and
 * size, and once running again executes nothing that arrived meanwhile; a
 * peer that is only slow (a 2 s fault) is never declared dead; an idle
 * connection costs no heartbeat at all.
 *
 * The target runs in a forked child that the parent stops and continues;
 * it reports hashes of its memory and what its receives and its QP saw.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pwtest.h"

#define REG_LEN		(4 * PWT_MIB)	/* the target region */
#define CTR_INIT	1000ull		/* the target's atomic counter */
#define NRECV		8		/* receives per QP */
#define RSLOT		(64 * PWT_KIB)
#define MAXQP		5
#define OP_LEN		4096
#define STREAM_N	64		/* the WRITE stream: 64 x 256 KiB */
#define STREAM_LEN	(256 * PWT_KIB)

struct tcfg {
	uint32_t peer_timeout_ms;	/* 0: the default bound */
	uint32_t policy;		/* 0: STALL */
	bool odp;			/* fresh ODP region and receive buffers */
	uint32_t delay_ms;		/* PW_FAULT_DELAY_MS in the target */
	int nqp;
};

/* the target's answer to 'H' and 'E' */
struct treport {
	uint64_t reg_hash, ctr_hash, rbuf_hash;
	uint32_t recv_ok, recv_err;
	uint32_t nerr;			/* QPs in error ('E') */
	uint32_t cause[MAXQP];		/* their QP_FATAL causes, 0: none seen */
	uint64_t hb_sent, hb_received, stops;
};

/*
 * Hash of memory the engine thread wrote. What orders those writes before
 * this read is the peer: it saw their ACKs, then sent the control message
 * that asks for the report. ThreadSanitizer cannot follow a chain through
 * another process, so the bytes are read with pwt_peek, which it does not
 * instrument, rather than annotating the engine.
 */
static uint64_t fnv(const void *p, size_t len)
{
	static uint8_t chunk[64 << 10];
	const uint8_t *src = p;
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t off = 0; off < len; off += sizeof(chunk)) {
		size_t n = len - off < sizeof(chunk) ? len - off : sizeof(chunk);

		PWT_ASSERT(pwt_peek(chunk, src + off, n));
		for (size_t i = 0; i < n; i++)
			h = (h ^ chunk[i]) * 0x100000001b3ull;
	}
	return h;
}

/* ------------------------------------------------------------------ */
/* The target (child)                                                   */
/* ------------------------------------------------------------------ */

struct tgt {
	struct pwt_side s;
	struct pw_qp *qp[MAXQP];
	struct pwt_buf reg, ctr, rbuf;
	uint32_t recv_ok, recv_err;
	uint32_t cause[MAXQP];
	int nqp;
};

static void tgt_poll_recvs(struct tgt *t)
{
	struct pw_wc wc;

	while (pw_poll_cq(t->s.rcq, 1, &wc) == 1) {
		if (wc.status == PW_WC_SUCCESS)
			t->recv_ok++;
		else
			t->recv_err++;
	}
}

static void tgt_take_events(struct tgt *t)
{
	struct pw_async_event ev;

	while (pw_get_async_event(t->s.ctx, &ev) == 0) {
		for (int i = 0; i < t->nqp; i++)
			if (ev.event_type == PW_EVENT_QP_FATAL && ev.element.qp == t->qp[i])
				t->cause[i] = ev.cause;
		pw_ack_async_event(&ev);
	}
}

static void tgt_report(struct tgt *t, int fd, uint32_t nerr)
{
	struct treport r;
	struct pw_stats st = pwt_stats(t->s.ctx);

	memset(&r, 0, sizeof(r));
	tgt_poll_recvs(t);
	r.reg_hash = fnv(t->reg.addr, t->reg.len);
	r.ctr_hash = fnv(t->ctr.addr, t->ctr.len);
	r.rbuf_hash = fnv(t->rbuf.addr, t->rbuf.len);
	r.recv_ok = t->recv_ok;
	r.recv_err = t->recv_err;
	r.nerr = nerr;
	memcpy(r.cause, t->cause, sizeof(r.cause));
	r.hb_sent = st.heartbeats_sent;
	r.hb_received = st.heartbeats_received;
	r.stops = st.stops_detected;
	pwt_ctl_send(fd, &r, sizeof(r));
}

static int tgt_main(int fd, void *arg)
{
	const struct tcfg *cfg = arg;
	struct pw_context_attr ca = { .peer_timeout_ms = cfg->peer_timeout_ms,
				      .fault_policy = cfg->policy };
	enum pwt_mode mode = cfg->odp ? PWT_ODP : PWT_PINNED;
	struct pw_listener *l;
	struct pwt_remote rem;
	struct tgt t;
	uint16_t port;
	char d[16];
	int afd;

	memset(&t, 0, sizeof(t));
	t.nqp = cfg->nqp;
	if (cfg->delay_ms) {
		snprintf(d, sizeof(d), "%u", cfg->delay_ms);
		setenv("PW_FAULT_DELAY_MS", d, 1);
	}
	pwt_side_open_attr(&t.s, &ca);
	afd = pw_get_async_fd(t.s.ctx);
	PWT_ASSERT(afd >= 0);
	PWT_EQ(fcntl(afd, F_SETFL, fcntl(afd, F_GETFL) | O_NONBLOCK), 0);
	pwt_buf_alloc(&t.reg, &t.s, REG_LEN, PWT_ACCESS_ALL, mode);
	pwt_buf_alloc(&t.ctr, &t.s, 4096, PWT_ACCESS_ALL, PWT_PINNED);
	pwt_buf_alloc(&t.rbuf, &t.s, (size_t)cfg->nqp * NRECV * RSLOT, PWT_ACCESS_ALL, mode);
	if (!cfg->odp) {
		pwt_fill(t.reg.addr, t.reg.len, 7);
		memset(t.rbuf.addr, 0xee, t.rbuf.len);
	}
	memset(t.ctr.addr, 0, t.ctr.len);
	*(uint64_t *)(void *)t.ctr.addr = CTR_INIT;

	l = pw_listen(t.s.ctx, "127.0.0.1", 0);
	PWT_NONNULL(l);
	port = pw_listener_port(l);
	memset(&rem, 0, sizeof(rem));
	rem.addr = pwt_va(t.reg.addr);
	rem.len = t.reg.len;
	rem.rkey = t.reg.rkey;
	rem.addr2 = pwt_va(t.ctr.addr);
	rem.rkey2 = t.ctr.rkey;
	pwt_ctl_send(fd, &port, sizeof(port));
	for (int i = 0; i < t.nqp; i++) {
		struct pw_qp_init_attr at = { .send_cq = t.s.scq, .recv_cq = t.s.rcq };
		struct pw_conn_param cp = { .private_data = &rem,
					    .private_data_len = sizeof(rem),
					    .timeout_ms = 30000 };

		t.qp[i] = pw_accept(l, t.s.pd, &at, &cp);
		PWT_NONNULL(t.qp[i]);
		for (int k = 0; k < NRECV; k++)
			PWT_OK(pwt_post_recv1(t.qp[i], (uint64_t)(i * NRECV + k),
					      t.rbuf.addr + (size_t)(i * NRECV + k) * RSLOT,
					      (uint32_t)RSLOT, t.rbuf.lkey));
	}
	for (;;) {
		char cmd;
		uint32_t nerr = 0;

		pwt_ctl_recv(fd, &cmd, 1, 120000);
		if (cmd == 'Q')
			break;
		if (cmd == 'E') {
			/* every QP in error, then their events */
			uint64_t end = pwt_now_ms() + 15000;

			for (;;) {
				nerr = 0;
				for (int i = 0; i < t.nqp; i++)
					nerr += pw_qp_state(t.qp[i]) == PW_QPS_ERR;
				if (nerr == (uint32_t)t.nqp || pwt_now_ms() > end)
					break;
				pwt_sleep_ms(10);
			}
			pwt_sleep_ms(50);
		}
		tgt_take_events(&t);
		tgt_report(&t, fd, nerr);
	}
	for (int i = 0; i < t.nqp; i++)
		PWT_OK(pw_destroy_qp(t.qp[i]));
	pwt_buf_free(&t.rbuf);
	pwt_buf_free(&t.ctr);
	pwt_buf_free(&t.reg);
	PWT_OK(pw_close_listener(l));
	pwt_side_close(&t.s);
	return 0;
}

/* ------------------------------------------------------------------ */
/* The requester (parent)                                               */
/* ------------------------------------------------------------------ */

struct lt {
	struct pwt_child c;
	struct tcfg cfg;
	struct pwt_side a;
	struct pw_qp *qp[MAXQP];
	struct pwt_remote r;
	struct pwt_buf loc;	/* pinned: sources, sinks, atomic results */
};

static void lt_start(struct lt *t, const struct tcfg *cfg, uint32_t my_timeout_ms)
{
	struct pw_context_attr ca = { .peer_timeout_ms = my_timeout_ms };
	uint16_t port;

	memset(t, 0, sizeof(*t));
	t->cfg = *cfg;
	pwt_fork(&t->c, tgt_main, &t->cfg);
	pwt_ctl_recv(t->c.fd, &port, sizeof(port), PWT_TIMEOUT_MS);
	pwt_side_open_attr(&t->a, &ca);
	pwt_buf_alloc(&t->loc, &t->a, STREAM_N * STREAM_LEN, PWT_ACCESS_ALL, PWT_PINNED);
	pwt_fill(t->loc.addr, t->loc.len, 99);
	for (int i = 0; i < cfg->nqp; i++) {
		struct pw_qp_init_attr at = { .send_cq = t->a.scq, .recv_cq = t->a.rcq };
		struct pw_conn_param cp = { .timeout_ms = 10000 };

		t->qp[i] = pw_connect(t->a.pd, &at, "127.0.0.1", port, &cp);
		PWT_NONNULL(t->qp[i]);
	}
	pwt_remote_from_qp(t->qp[0], &t->r);
}

static void lt_report(struct lt *t, char cmd, struct treport *r)
{
	pwt_ctl_send(t->c.fd, &cmd, 1);
	pwt_ctl_recv(t->c.fd, r, sizeof(*r), 30000);
}

static void lt_stop(struct lt *t)
{
	int st;

	PWT_EQ(kill(t->c.pid, SIGSTOP), 0);
	PWT_EQ(waitpid(t->c.pid, &st, WUNTRACED), t->c.pid);
	PWT_ASSERTF(WIFSTOPPED(st), "target status %#x", st);
}

static void lt_cont(struct lt *t)
{
	PWT_EQ(kill(t->c.pid, SIGCONT), 0);
}

static void lt_close(struct lt *t)
{
	char q = 'Q';

	pwt_ctl_send(t->c.fd, &q, 1);
	PWT_CHILD_OK(&t->c, 30000);
	for (int i = 0; i < t->cfg.nqp; i++)
		PWT_OK(pw_destroy_qp(t->qp[i]));
	pwt_buf_free(&t->loc);
	pwt_side_close(&t->a);
}

/* One WRITE and one READ that succeed: the path works, nothing pending. */
static void warm_up(struct lt *t, struct pw_qp *qp)
{
	struct pw_wc wc;

	PWT_OK(pwt_post_rdma(qp, PW_WR_RDMA_READ, 0xa0, t->loc.addr, 64, t->loc.lkey,
			     t->r.addr + REG_LEN - 64, t->r.rkey, PW_SEND_SIGNALED));
	PWT_WAIT_WC(t->a.scq, &wc);
	PWT_ASSERTF(wc.wr_id == 0xa0 && wc.status == PW_WC_SUCCESS,
		    "warm-up READ: %s", pw_wc_status_str(wc.status));
}

enum opkind { OP_READ, OP_ATOMIC, OP_WRITE, OP_SEND, OP_STREAM, OP_N };
static const char *const opname[OP_N] = { "read", "atomic", "write", "send", "stream" };

/*
 * Post @k on @qp: the op (wr_id base + 0) and one more WR behind it
 * (base + 1), or the whole stream (base + 0..STREAM_N-1). Return the
 * number of WRs posted.
 */
static int post_op(struct lt *t, struct pw_qp *qp, enum opkind k, uint64_t base)
{
	uint8_t *l = t->loc.addr;

	switch (k) {
	case OP_READ:
		PWT_OK(pwt_post_rdma(qp, PW_WR_RDMA_READ, base, l, OP_LEN, t->loc.lkey,
				     t->r.addr, t->r.rkey, PW_SEND_SIGNALED));
		break;
	case OP_ATOMIC:
		PWT_OK(pwt_post_atomic(qp, PW_WR_ATOMIC_FETCH_AND_ADD, base,
				       (uint64_t *)(void *)l, t->loc.lkey, t->r.addr2,
				       t->r.rkey2, 1, 0, PW_SEND_SIGNALED));
		break;
	case OP_WRITE:
		PWT_OK(pwt_post_rdma(qp, PW_WR_RDMA_WRITE, base, l, OP_LEN, t->loc.lkey,
				     t->r.addr + OP_LEN, t->r.rkey, PW_SEND_SIGNALED));
		break;
	case OP_SEND:
		PWT_OK(pwt_post_send1(qp, PW_WR_SEND, base, l, OP_LEN, t->loc.lkey, 0,
				      PW_SEND_SIGNALED));
		break;
	case OP_STREAM:
		for (int i = 0; i < STREAM_N; i++)
			PWT_OK(pwt_post_rdma(qp, PW_WR_RDMA_WRITE, base + (uint64_t)i,
					     l + (size_t)i * STREAM_LEN, (uint32_t)STREAM_LEN,
					     t->loc.lkey,
					     t->r.addr + (size_t)(i % 16) * STREAM_LEN,
					     t->r.rkey, PW_SEND_SIGNALED));
		return STREAM_N;
	default:
		break;
	}
	PWT_OK(pwt_post_rdma(qp, PW_WR_RDMA_WRITE, base + 1, l + OP_LEN, 8, t->loc.lkey,
			     t->r.addr + 3 * OP_LEN, t->r.rkey, PW_SEND_SIGNALED));
	return 2;
}

static void expect_qp_event(struct pw_context *ctx, struct pw_qp *qp,
			    enum pw_qp_cause cause)
{
	struct pollfd pfd = { .fd = pw_get_async_fd(ctx), .events = POLLIN };
	struct pw_async_event ev;

	PWT_ASSERTF(poll(&pfd, 1, 5000) == 1, "no async event for the failed QP");
	PWT_OK(pw_get_async_event(ctx, &ev));
	PWT_EQ(ev.event_type, PW_EVENT_QP_FATAL);
	PWT_ASSERT(ev.element.qp == qp);
	PWT_ASSERTF(ev.cause == cause, "cause %s, want %s", pw_qp_cause_str(ev.cause),
		    pw_qp_cause_str(cause));
	pw_ack_async_event(&ev);
}

/*
 * The target is stopped, then @k is posted: the first WR fails with
 * RETRY_EXC_ERR within the bound (+10%), the rest are flushed; after the
 * target runs again nothing of it lands there.
 */
static void stop_case(enum opkind k, uint32_t bound_ms)
{
	struct tcfg cfg = { .peer_timeout_ms = bound_ms, .nqp = 1 };
	struct treport r0, r1;
	struct pw_wc wc;
	struct lt t;
	uint64_t t0, ms, lo;
	int n;

	lt_start(&t, &cfg, bound_ms);
	warm_up(&t, t.qp[0]);
	lt_report(&t, 'H', &r0);
	lt_stop(&t);
	t0 = pwt_now_ms();
	n = post_op(&t, t.qp[0], k, 100);
	pwt_wait_wc_at(__FILE__, __LINE__, t.a.scq, &wc, (int)bound_ms * 2);
	ms = pwt_now_ms() - t0;
	PWT_EQ(wc.wr_id, 100);
	PWT_ASSERTF(wc.status == PW_WC_RETRY_EXC_ERR, "%s: %s, want RETRY_EXC_ERR",
		    opname[k], pw_wc_status_str(wc.status));
	for (int i = 1; i < n; i++)
		PWT_EXPECT_ERR(t.a.scq, 100 + (uint64_t)i, PW_WC_WR_FLUSH_ERR, t.qp[0]->qp_num);
	/*
	 * Not before the bound (a stopped peer is not presumed dead early),
	 * except that a stream which filled the peer's window may meet TCP's
	 * own user timeout on its zero-window probes first.
	 */
	lo = k == OP_STREAM ? 0 : bound_ms - 50;
	printf("%s: RETRY_EXC_ERR after %" PRIu64 " ms (bound %u ms)\n", opname[k], ms,
	       bound_ms);
	PWT_ASSERTF(ms >= lo && ms <= bound_ms + bound_ms / 10,
		    "%s failed after %" PRIu64 " ms, bound %u ms", opname[k], ms, bound_ms);
	expect_qp_event(t.a.ctx, t.qp[0], PW_QP_CAUSE_PEER_TIMEOUT);
	PWT_NO_WC(t.a.scq, 100);

	lt_cont(&t);
	lt_report(&t, 'E', &r1);
	PWT_EQ(r1.nerr, 1);
	/*
	 * It finds it was stopped, and the requests that arrived meanwhile
	 * fail its QP; a stream's connection may have been aborted by the
	 * requester's TCP instead (its user timeout), which resets it.
	 */
	PWT_ASSERTF(r1.cause[0] == PW_QP_CAUSE_STOPPED ||
		    (k == OP_STREAM && r1.cause[0] == PW_QP_CAUSE_PEER_RESET),
		    "target QP cause %s, want STOPPED", pw_qp_cause_str(r1.cause[0]));
	PWT_EQ(r1.stops, 1);
	/* nothing landed late: memory, counter and receives as before */
	PWT_EQ(r1.reg_hash, r0.reg_hash);
	PWT_EQ(r1.ctr_hash, r0.ctr_hash);
	PWT_EQ(r1.rbuf_hash, r0.rbuf_hash);
	PWT_EQ(r1.recv_ok, 0);
	PWT_EQ(r1.recv_err, NRECV);	/* flushed */
	PWT_EQ(pwt_stats(t.a.ctx).peer_timeouts, 1);
	lt_close(&t);
}

static void t_stop(const char *arg)
{
	for (int k = 0; k < OP_N; k++)
		if (arg && !strcmp(arg, opname[k])) {
			stop_case((enum opkind)k, 2000);
			return;
		}
	pwt_fail(__FILE__, __LINE__, "unknown op '%s'", arg ? arg : "");
}

/*
 * The default bound (30 s): the five kinds at once, one QP each, against
 * one stopped target; each fails within 30 s + 10%.
 */
static void t_stop_default(const char *arg)
{
	struct tcfg cfg = { .nqp = OP_N };
	uint64_t t0, done[OP_N] = { 0 };
	int n[OP_N], left = OP_N;
	struct treport r0, r1;
	struct lt t;

	(void)arg;
	lt_start(&t, &cfg, 0);
	for (int k = 0; k < OP_N; k++)
		warm_up(&t, t.qp[k]);
	lt_report(&t, 'H', &r0);
	lt_stop(&t);
	t0 = pwt_now_ms();
	for (int k = 0; k < OP_N; k++)
		n[k] = post_op(&t, t.qp[k], (enum opkind)k, 1000 * (uint64_t)(k + 1));
	while (left) {
		struct pw_wc wc;
		int k;

		pwt_wait_wc_at(__FILE__, __LINE__, t.a.scq, &wc, 40000);
		k = (int)(wc.wr_id / 1000) - 1;
		PWT_ASSERT(k >= 0 && k < OP_N);
		if (wc.wr_id % 1000 == 0) {
			PWT_ASSERTF(wc.status == PW_WC_RETRY_EXC_ERR, "%s: %s", opname[k],
				    pw_wc_status_str(wc.status));
			struct pw_qp_attr qa;

			done[k] = pwt_now_ms() - t0;
			PWT_OK(pw_query_qp(t.qp[k], &qa, sizeof(qa)));
			printf("%s: RETRY_EXC_ERR after %" PRIu64 " ms (default bound), %s\n",
			       opname[k], done[k], pw_qp_cause_str(qa.cause));
		} else {
			PWT_EQ(wc.status, PW_WC_WR_FLUSH_ERR);
		}
		if (wc.wr_id % 1000 == (uint64_t)n[k] - 1)
			left--;
	}
	for (int k = 0; k < OP_N; k++)
		PWT_ASSERTF(done[k] && done[k] <= 33000 &&
			    (k == OP_STREAM || done[k] >= 29950),
			    "%s failed after %" PRIu64 " ms, bound 30000 ms", opname[k],
			    done[k]);
	lt_cont(&t);
	lt_report(&t, 'E', &r1);
	PWT_EQ(r1.nerr, OP_N);
	PWT_EQ(r1.reg_hash, r0.reg_hash);
	PWT_EQ(r1.ctr_hash, r0.ctr_hash);
	PWT_EQ(r1.rbuf_hash, r0.rbuf_hash);
	PWT_EQ(r1.recv_ok, 0);
	lt_close(&t);
}

/*
 * A stop shorter than the bound: the WRs wait, then succeed, and the
 * target executes them once (data, counter).
 */
static void t_short_stop(const char *arg)
{
	struct tcfg cfg = { .peer_timeout_ms = 2000, .nqp = 1 };
	uint64_t *res;
	struct treport r1;
	struct lt t;

	(void)arg;
	lt_start(&t, &cfg, 2000);
	warm_up(&t, t.qp[0]);
	res = (uint64_t *)(void *)(t.loc.addr + 8 * OP_LEN);
	lt_stop(&t);
	PWT_OK(pwt_post_rdma(t.qp[0], PW_WR_RDMA_WRITE, 1, t.loc.addr, OP_LEN, t.loc.lkey,
			     t.r.addr + OP_LEN, t.r.rkey, PW_SEND_SIGNALED));
	PWT_OK(pwt_post_atomic(t.qp[0], PW_WR_ATOMIC_FETCH_AND_ADD, 2, res, t.loc.lkey,
			       t.r.addr2, t.r.rkey2, 5, 0, PW_SEND_SIGNALED));
	PWT_OK(pwt_post_rdma(t.qp[0], PW_WR_RDMA_READ, 3, t.loc.addr + 4 * OP_LEN,
			     OP_LEN, t.loc.lkey, t.r.addr + OP_LEN, t.r.rkey,
			     PW_SEND_SIGNALED));
	pwt_sleep_ms(1000);
	PWT_NO_WC(t.a.scq, 0);
	lt_cont(&t);
	PWT_EXPECT_OK(t.a.scq, 1, PW_WC_RDMA_WRITE, OP_LEN, t.qp[0]->qp_num);
	PWT_EXPECT_OK(t.a.scq, 2, PW_WC_FETCH_ADD, 8, t.qp[0]->qp_num);
	PWT_EXPECT_OK(t.a.scq, 3, PW_WC_RDMA_READ, OP_LEN, t.qp[0]->qp_num);
	PWT_EQ(*res, CTR_INIT);
	PWT_MEMEQ(t.loc.addr + 4 * OP_LEN, t.loc.addr, OP_LEN);
	lt_report(&t, 'H', &r1);
	PWT_EQ(r1.stops, 0);
	PWT_EQ(pw_qp_state(t.qp[0]), PW_QPS_RTS);
	lt_close(&t);
}

/*
 * No false positive: every target fault takes 2 s (an injected delay,
 * as a slow disk would), the bound is 3 s, STALL: a WRITE, a READ, an
 * atomic and a SEND into fresh ODP memory on four QPs (the worker serves
 * their faults one after the other, the last after 8 s) all succeed.
 */
static void t_slow_fault(const char *arg)
{
	struct tcfg cfg = { .peer_timeout_ms = 3000, .odp = true, .delay_ms = 2000,
			    .nqp = 4, .policy = PW_FAULT_STALL };
	uint8_t *l;
	uint64_t *res, t0, ms;
	struct treport r;
	struct pw_stats st;
	struct lt t;

	(void)arg;
	if (arg && !strcmp(arg, "notify"))
		cfg.policy = PW_FAULT_NOTIFY;
	lt_start(&t, &cfg, 3000);
	l = t.loc.addr;
	res = (uint64_t *)(void *)(l + 8 * OP_LEN);
	*res = 77;
	t0 = pwt_now_ms();
	PWT_OK(pwt_post_rdma(t.qp[0], PW_WR_RDMA_WRITE, 1, l, OP_LEN, t.loc.lkey,
			     t.r.addr, t.r.rkey, PW_SEND_SIGNALED));
	PWT_OK(pwt_post_rdma(t.qp[1], PW_WR_RDMA_READ, 2, l + 4 * OP_LEN, OP_LEN,
			     t.loc.lkey, t.r.addr + PWT_MIB, t.r.rkey, PW_SEND_SIGNALED));
	PWT_OK(pwt_post_atomic(t.qp[2], PW_WR_ATOMIC_FETCH_AND_ADD, 3, res, t.loc.lkey,
			       t.r.addr + 2 * PWT_MIB, t.r.rkey, 9, 0, PW_SEND_SIGNALED));
	PWT_OK(pwt_post_send1(t.qp[3], PW_WR_SEND, 4, l, OP_LEN, t.loc.lkey, 0,
			      PW_SEND_SIGNALED));
	for (int i = 0; i < 4; i++) {
		struct pw_wc wc;

		pwt_wait_wc_at(__FILE__, __LINE__, t.a.scq, &wc, 20000);
		PWT_ASSERTF(wc.status == PW_WC_SUCCESS, "WR %llu: %s after %llu ms",
			    (unsigned long long)wc.wr_id, pw_wc_status_str(wc.status),
			    (unsigned long long)(pwt_now_ms() - t0));
	}
	ms = pwt_now_ms() - t0;
	PWT_ASSERTF(ms >= 4000, "four 2 s faults took %" PRIu64 " ms", ms);
	memset(l + 5 * OP_LEN, 0xaa, OP_LEN);
	PWT_ZERO(l + 4 * OP_LEN, OP_LEN);	/* the READ of fresh memory */
	PWT_EQ(*res, 0);
	/* the WRITE landed: read it back (no fault now) */
	PWT_OK(pwt_post_rdma(t.qp[0], PW_WR_RDMA_READ, 5, l + 5 * OP_LEN, OP_LEN,
			     t.loc.lkey, t.r.addr, t.r.rkey, PW_SEND_SIGNALED));
	PWT_EXPECT_OK(t.a.scq, 5, PW_WC_RDMA_READ, OP_LEN, t.qp[0]->qp_num);
	PWT_MEMEQ(l + 5 * OP_LEN, l, OP_LEN);
	lt_report(&t, 'H', &r);
	st = pwt_stats(t.a.ctx);
	printf("slow_fault (%s): 4 WRs in %" PRIu64 " ms with 2 s faults, bound 3 s; "
	       "target sent %" PRIu64 " heartbeats, requester %" PRIu64 " PINGs\n",
	       cfg.policy == PW_FAULT_NOTIFY ? "notify" : "stall", ms, r.hb_sent,
	       st.heartbeats_sent);
	PWT_EQ(r.recv_ok, 1);
	PWT_ASSERT(r.hb_sent > 0);
	PWT_EQ(st.peer_timeouts, 0);
	for (int i = 0; i < 4; i++)
		PWT_EQ(pw_qp_state(t.qp[i]), PW_QPS_RTS);
	lt_close(&t);
}

/*
 * A WRITE stream into fresh ODP memory of a target whose faults take
 * 2.5 s, bound 2 s: the target stalls with its receive window full (TCP
 * answers the zero-window probes), beats meanwhile, and every WRITE
 * succeeds; the data is all there.
 */
static void t_slow_stream(const char *arg)
{
	struct tcfg cfg = { .peer_timeout_ms = 2000, .odp = true, .delay_ms = 2500,
			    .nqp = 1, .policy = PW_FAULT_STALL };
	struct pw_stats st;
	struct treport r;
	uint64_t t0, ms;
	struct lt t;

	(void)arg;
	lt_start(&t, &cfg, 2000);
	t0 = pwt_now_ms();
	for (int i = 0; i < 16; i++)
		PWT_OK(pwt_post_rdma(t.qp[0], PW_WR_RDMA_WRITE, (uint64_t)i,
				     t.loc.addr + (size_t)i * STREAM_LEN, (uint32_t)STREAM_LEN,
				     t.loc.lkey, t.r.addr + (size_t)i * STREAM_LEN, t.r.rkey,
				     PW_SEND_SIGNALED));
	for (int i = 0; i < 16; i++) {
		struct pw_wc wc;

		pwt_wait_wc_at(__FILE__, __LINE__, t.a.scq, &wc, 30000);
		PWT_ASSERTF(wc.wr_id == (uint64_t)i && wc.status == PW_WC_SUCCESS,
			    "WRITE %llu: %s after %llu ms", (unsigned long long)wc.wr_id,
			    pw_wc_status_str(wc.status),
			    (unsigned long long)(pwt_now_ms() - t0));
	}
	ms = pwt_now_ms() - t0;
	lt_report(&t, 'H', &r);
	st = pwt_stats(t.a.ctx);
	printf("slow_stream: 16 x 256 KiB WRITEs in %" PRIu64 " ms with 2.5 s faults, bound "
	       "2 s; target sent %" PRIu64 " heartbeats\n", ms, r.hb_sent);
	PWT_ASSERTF(ms >= 2500, "the stream took only %" PRIu64 " ms", ms);
	PWT_ASSERT(r.hb_sent > 0);
	PWT_EQ(st.peer_timeouts, 0);
	/* every byte: read the region back */
	for (int i = 0; i < 16; i++) {
		PWT_OK(pwt_post_rdma(t.qp[0], PW_WR_RDMA_READ, 100 + (uint64_t)i,
				     t.loc.addr + (size_t)(i + 16) * STREAM_LEN,
				     (uint32_t)STREAM_LEN, t.loc.lkey,
				     t.r.addr + (size_t)i * STREAM_LEN, t.r.rkey,
				     PW_SEND_SIGNALED));
		PWT_EXPECT_OK(t.a.scq, 100 + (uint64_t)i, PW_WC_RDMA_READ, (uint32_t)STREAM_LEN,
			      t.qp[0]->qp_num);
	}
	PWT_MEMEQ(t.loc.addr + 16 * STREAM_LEN, t.loc.addr, 16 * STREAM_LEN);
	lt_close(&t);
}

/*
 * The requester's own fault is the slow one (2.5 s against a 2 s bound):
 * it PINGs the idle target meanwhile, which answers, and nothing fails.
 */
static void t_slow_local(const char *arg)
{
	struct tcfg cfg = { .peer_timeout_ms = 2000, .nqp = 1 };
	struct pwt_buf src;
	struct pw_stats st;
	struct lt t;

	(void)arg;
	memset(&t, 0, sizeof(t));
	/* the target is forked first: the delay is the requester's alone */
	t.cfg = cfg;
	{
		uint16_t port;
		struct pw_context_attr ca = { .peer_timeout_ms = 2000 };
		struct pw_qp_init_attr at;
		struct pw_conn_param cp = { .timeout_ms = 10000 };

		pwt_fork(&t.c, tgt_main, &t.cfg);
		pwt_ctl_recv(t.c.fd, &port, sizeof(port), PWT_TIMEOUT_MS);
		setenv("PW_FAULT_DELAY_MS", "2500", 1);
		pwt_side_open_attr(&t.a, &ca);
		unsetenv("PW_FAULT_DELAY_MS");
		pwt_buf_alloc(&t.loc, &t.a, STREAM_N * STREAM_LEN, PWT_ACCESS_ALL,
			      PWT_PINNED);
		memset(&at, 0, sizeof(at));
		at.send_cq = t.a.scq;
		at.recv_cq = t.a.rcq;
		t.qp[0] = pw_connect(t.a.pd, &at, "127.0.0.1", port, &cp);
		PWT_NONNULL(t.qp[0]);
		pwt_remote_from_qp(t.qp[0], &t.r);
	}
	/* a fresh ODP source: its fault goes to the (slow) worker */
	pwt_buf_alloc(&src, &t.a, 1 * PWT_MIB, PWT_ACCESS_ALL, PWT_ODP);
	PWT_OK(pwt_post_rdma(t.qp[0], PW_WR_RDMA_WRITE, 1, src.addr, (uint32_t)src.len,
			     src.lkey, t.r.addr, t.r.rkey, PW_SEND_SIGNALED));
	{
		struct pw_wc wc;

		pwt_wait_wc_at(__FILE__, __LINE__, t.a.scq, &wc, 10000);
		PWT_ASSERTF(wc.status == PW_WC_SUCCESS, "WRITE from a slow source: %s",
			    pw_wc_status_str(wc.status));
	}
	st = pwt_stats(t.a.ctx);
	printf("slow_local: %" PRIu64 " heartbeats sent, %" PRIu64 " received, %" PRIu64
	       " peer timeouts\n", st.heartbeats_sent, st.heartbeats_received,
	       st.peer_timeouts);
	PWT_EQ(st.peer_timeouts, 0);
	PWT_ASSERT(st.heartbeats_sent > 0 && st.heartbeats_received > 0);
	PWT_EQ(pw_qp_state(t.qp[0]), PW_QPS_RTS);
	pwt_buf_free(&src);
	lt_close(&t);
}

/* An idle connection longer than the bound: no heartbeat, no failure. */
static void t_idle(const char *arg)
{
	struct tcfg cfg = { .peer_timeout_ms = 2000, .nqp = 1 };
	struct treport r;
	struct pw_stats st;
	struct lt t;

	(void)arg;
	lt_start(&t, &cfg, 2000);
	warm_up(&t, t.qp[0]);
	pwt_sleep_ms(5000);
	warm_up(&t, t.qp[0]);
	lt_report(&t, 'H', &r);
	st = pwt_stats(t.a.ctx);
	PWT_EQ(st.heartbeats_sent, 0);
	PWT_EQ(r.hb_sent, 0);
	PWT_EQ(st.peer_timeouts, 0);
	PWT_EQ(r.stops, 0);
	lt_close(&t);
}

/*
 * The requester is the one stopped (3 s, bound 2 s) with a READ and a
 * WRITE out: the target answered them meanwhile and has nothing to give
 * up on, so after the stop both complete successfully and the QP lives.
 * The target here is the parent; the requester is the child.
 */
/*
 * The bound of the stopped-requester test, and its stop (longer). Doubled
 * under ThreadSanitizer: there, two full runs in four saw the requester's
 * peer silent for a whole 2 s bound right after SIGCONT, at the start of
 * the run, which plain and ASan builds never showed.
 */
static uint32_t sreq_bound_ms(void)
{
	return pwt_under_tsan() ? 4000 : 2000;
}

static int stopped_req_main(int fd, void *arg)
{
	struct pw_context_attr ca = { .peer_timeout_ms = sreq_bound_ms() };
	struct pw_qp_init_attr at;
	struct pw_conn_param cp = { .timeout_ms = 10000 };
	struct pwt_remote r;
	struct pwt_side s;
	struct pwt_buf loc;
	uint16_t port;
	char ok = 'K';

	(void)arg;
	pwt_ctl_recv(fd, &port, sizeof(port), PWT_TIMEOUT_MS);
	pwt_side_open_attr(&s, &ca);
	pwt_buf_alloc(&loc, &s, 64 * PWT_KIB, PWT_ACCESS_ALL, PWT_PINNED);
	pwt_fill(loc.addr, 4096, 31);
	memset(&at, 0, sizeof(at));
	at.send_cq = s.scq;
	at.recv_cq = s.rcq;
	s.qp = pw_connect(s.pd, &at, "127.0.0.1", port, &cp);
	PWT_NONNULL(s.qp);
	pwt_remote_from_qp(s.qp, &r);
	PWT_OK(pwt_post_rdma(s.qp, PW_WR_RDMA_WRITE, 1, loc.addr, 4096, loc.lkey,
			     r.addr, r.rkey, PW_SEND_SIGNALED));
	PWT_OK(pwt_post_rdma(s.qp, PW_WR_RDMA_READ, 2, loc.addr + 8192, 4096, loc.lkey,
			     r.addr + 4096, r.rkey, PW_SEND_SIGNALED));
	raise(SIGSTOP);
	{
		struct pw_qp_attr qa;
		struct pw_wc wc;

		pwt_wait_wc_at(__FILE__, __LINE__, s.scq, &wc, PWT_TIMEOUT_MS);
		struct pw_stats st = pwt_stats(s.ctx);

		PWT_OK(pw_query_qp(s.qp, &qa, sizeof(qa)));
		PWT_ASSERTF(wc.wr_id == 1 && wc.status == PW_WC_SUCCESS &&
			    wc.opcode == PW_WC_RDMA_WRITE,
			    "WRITE: wr_id %" PRIu64 " %s, QP cause: %s (stops %" PRIu64
			    ", heartbeats %" PRIu64 " sent %" PRIu64 " received)",
			    wc.wr_id, pw_wc_status_str(wc.status),
			    pw_qp_cause_str(qa.cause), st.stops_detected,
			    st.heartbeats_sent, st.heartbeats_received);
	}
	PWT_EXPECT_OK(s.scq, 2, PW_WC_RDMA_READ, 4096, s.qp->qp_num);
	PWT_PATTERN(loc.addr + 8192, 4096, 32, 0);
	PWT_EQ(pw_qp_state(s.qp), PW_QPS_RTS);
	/* and the QP goes on */
	PWT_OK(pwt_post_rdma(s.qp, PW_WR_RDMA_READ, 3, loc.addr + 8192, 4096, loc.lkey,
			     r.addr, r.rkey, PW_SEND_SIGNALED));
	PWT_EXPECT_OK(s.scq, 3, PW_WC_RDMA_READ, 4096, s.qp->qp_num);
	PWT_MEMEQ(loc.addr + 8192, loc.addr, 4096);
	pwt_ctl_send(fd, &ok, 1);
	pwt_ctl_recv(fd, &ok, 1, 30000);
	PWT_OK(pw_destroy_qp(s.qp));
	s.qp = NULL;
	pwt_buf_free(&loc);
	pwt_side_close(&s);
	return 0;
}

static void t_stopped_requester(const char *arg)
{
	struct pw_context_attr ca = { .peer_timeout_ms = sreq_bound_ms() };
	struct pw_qp_init_attr at;
	struct pw_conn_param cp;
	struct pwt_remote rem;
	struct pwt_child c;
	struct pwt_side b;
	struct pwt_buf reg;
	struct pw_listener *l;
	struct pw_stats st;
	uint16_t port;
	char v;
	int status;

	(void)arg;
	pwt_fork(&c, stopped_req_main, NULL);
	pwt_side_open_attr(&b, &ca);
	pwt_buf_alloc(&reg, &b, 64 * PWT_KIB, PWT_ACCESS_ALL, PWT_PINNED);
	pwt_fill(reg.addr + 4096, 4096, 32);
	l = pw_listen(b.ctx, "127.0.0.1", 0);
	PWT_NONNULL(l);
	port = pw_listener_port(l);
	memset(&rem, 0, sizeof(rem));
	rem.addr = pwt_va(reg.addr);
	rem.len = reg.len;
	rem.rkey = reg.rkey;
	memset(&at, 0, sizeof(at));
	at.send_cq = b.scq;
	at.recv_cq = b.rcq;
	memset(&cp, 0, sizeof(cp));
	cp.private_data = &rem;
	cp.private_data_len = sizeof(rem);
	pwt_ctl_send(c.fd, &port, sizeof(port));
	b.qp = pw_accept(l, b.pd, &at, &cp);
	PWT_NONNULL(b.qp);
	PWT_EQ(waitpid(c.pid, &status, WUNTRACED), c.pid);
	PWT_ASSERT(WIFSTOPPED(status));
	pwt_sleep_ms(sreq_bound_ms() * 3 / 2);
	st = pwt_stats(b.ctx);
	/* the target's side of it, for a failure's report */
	printf("target: QP %s, %" PRIu64 " stops detected, %" PRIu64
	       " peer timeouts, %" PRIu64 " heartbeats sent\n",
	       pw_qp_state(b.qp) == PW_QPS_RTS ? "RTS" : "not RTS", st.stops_detected,
	       st.peer_timeouts, st.heartbeats_sent);
	fflush(stdout);
	PWT_EQ(kill(c.pid, SIGCONT), 0);
	pwt_ctl_recv(c.fd, &v, 1, 20000);
	PWT_EQ(v, 'K');
	PWT_PATTERN(reg.addr, 4096, 31, 0);
	PWT_EQ(pw_qp_state(b.qp), PW_QPS_RTS);
	st = pwt_stats(b.ctx);
	PWT_EQ(st.peer_timeouts, 0);
	pwt_ctl_send(c.fd, &v, 1);
	PWT_CHILD_OK(&c, 20000);
	PWT_OK(pw_destroy_qp(b.qp));
	b.qp = NULL;
	pwt_buf_free(&reg);
	PWT_OK(pw_close_listener(l));
	pwt_side_close(&b);
}

static const struct pwt_case cases[] = {
	{ "stop", t_stop },
	{ "stop_default", t_stop_default },
	{ "short_stop", t_short_stop },
	{ "slow_fault", t_slow_fault },
	{ "slow_stream", t_slow_stream },
	{ "slow_local", t_slow_local },
	{ "idle", t_idle },
	{ "stopped_requester", t_stopped_requester },
};

int main(int argc, char **argv)
{
	return pwt_main(argc, argv, cases, PWT_ARRAY_SIZE(cases));
}
