/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of completion queues and channels (src/engine/cq.c).
 *
 * The CQ is where "nothing lost" is finally kept: every completion pushed
 * must come out of pw_poll_cq exactly once, in order, whatever the ring's
 * wrap state and however far the application falls behind. The channel is
 * what blocking applications sleep on, so arming rules (all vs solicited,
 * errors always fire) and the fd's readability are checked exactly.
 *
 * Completions are injected with the internal pw_cq_push(), as the engine
 * does, so no QP or peer is needed.
 */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>

#include "core/context.h"
#include "engine/cq.h"

#include "unit.h"

static struct pw_wc mkwc(uint64_t id, enum pw_wc_status st)
{
	struct pw_wc wc = {
		.wr_id = id,
		.status = st,
		.opcode = (id & 1) ? PW_WC_RECV : PW_WC_RDMA_WRITE,
		.vendor_err = (uint32_t)(id * 3),
		.byte_len = (uint32_t)(id * 7),
		.imm_data = (uint32_t)(id ^ 0xa5a5a5a5u),
		.qp_num = (uint32_t)(id + 100),
		.wc_flags = (id & 2) ? PW_WC_WITH_IMM : 0,
	};

	return wc;
}

static void push(struct pw_cq *cq, uint64_t id)
{
	struct pw_wc wc = mkwc(id, PW_WC_SUCCESS);

	pw_cq_push(to_cq(cq), &wc, false);
}

/* Every field must come back as pushed; @id is the expected wr_id. */
static bool wc_matches(const struct pw_wc *wc, uint64_t id)
{
	struct pw_wc want = mkwc(id, PW_WC_SUCCESS);

	return wc->wr_id == want.wr_id && wc->status == want.status &&
	       wc->opcode == want.opcode && wc->vendor_err == want.vendor_err &&
	       wc->byte_len == want.byte_len && wc->imm_data == want.imm_data &&
	       wc->qp_num == want.qp_num && wc->wc_flags == want.wc_flags;
}

/* Poll up to @n and check they are ids *next, *next+1, ...; return count. */
static int poll_expect(struct pw_cq *cq, int n, uint64_t *next)
{
	struct pw_wc wc[64];
	int got;

	if (n > 64)
		n = 64;
	got = pw_poll_cq(cq, n, wc);
	for (int i = 0; i < got; i++) {
		if (!wc_matches(&wc[i], *next)) {
			UNIT_FAIL("completion %d: wr_id %" PRIu64 ", want %" PRIu64
				  " (or fields differ)", i, wc[i].wr_id, *next);
			return -1;
		}
		(*next)++;
	}
	return got;
}

static bool fd_readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* ---- ring --------------------------------------------------------------- */

/* FIFO order across many wrap-arounds of a ring that never has to grow. */
static void test_fifo_wrap(void)
{
	struct pw_context *ctx = pw_open(NULL);
	struct pw_cq *cq;
	uint64_t pushed = 0, next = 0;

	REQUIRE(ctx);
	cq = pw_create_cq(ctx, 4, NULL, NULL, 0);
	REQUIRE(cq);
	CHECK_INT(cq->cqe, 4);
	CHECK_INT(to_cq(cq)->cap, 4);
	/* vary the batch sizes so head visits every slot with every fill */
	for (int round = 0; round < 200; round++) {
		int in = 1 + round % 4;
		int out = 1 + (round * 7) % 4;

		while (to_cq(cq)->count < 4 && in--)
			push(cq, pushed++);
		if (poll_expect(cq, out, &next) < 0)
			break;
	}
	while (next < pushed) {
		int got = poll_expect(cq, 3, &next);

		if (got <= 0) {
			UNIT_FAIL("lost completions: %" PRIu64 " of %" PRIu64,
				  next, pushed);
			break;
		}
	}
	CHECK_INT(to_cq(cq)->cap, 4);		/* never needed to grow */
	CHECK_INT(to_cq(cq)->overruns, 0);
	CHECK(pushed > 200);
	{
		struct pw_wc wc;

		CHECK_INT(pw_poll_cq(cq, 1, &wc), 0);
	}
	CHECK_INT(pw_destroy_cq(cq), 0);
	CHECK_INT(pw_close(ctx), 0);
}

/*
 * pw_cq_commit reserves room up front (rounded to a power of two) and keeps
 * entries in order while the ring is wrapped; uncommit releases the count.
 */
static void test_commit_grows(void)
{
	struct pw_context *ctx = pw_open(NULL);
	struct pw_cq *cq;
	struct pw_cq_i *c;
	uint64_t pushed = 0, next = 0;

	REQUIRE(ctx);
	cq = pw_create_cq(ctx, 3, NULL, NULL, 0);
	REQUIRE(cq);
	c = to_cq(cq);
	CHECK_INT(c->cap, 4);
	CHECK_INT(cq->cqe, 4);
	/* wrap the ring: head at slot 3, entries in slots 3, 0, 1 */
	for (int i = 0; i < 3; i++)
		push(cq, pushed++);
	CHECK_INT(poll_expect(cq, 3, &next), 3);
	for (int i = 0; i < 3; i++)
		push(cq, pushed++);
	CHECK_INT(c->head, 3);

	CHECK_INT(pw_cq_commit(c, 100), 0);
	CHECK_INT(c->committed, 100);
	CHECK_INT(c->cap, 128);
	CHECK_INT(cq->cqe, 128);
	CHECK_INT(c->count, 3);
	CHECK_INT(pw_cq_commit(c, 28), 0);	/* 128 still fits */
	CHECK_INT(c->cap, 128);
	CHECK_INT(pw_cq_commit(c, 1), 0);
	CHECK_INT(c->committed, 129);
	CHECK_INT(c->cap, 256);
	for (int i = 0; i < 200; i++)
		push(cq, pushed++);
	CHECK_INT(c->cap, 256);
	while (next < pushed && poll_expect(cq, 64, &next) > 0)
		;
	CHECK_INT(next, pushed);

	pw_cq_uncommit(c, 129);
	CHECK_INT(c->committed, 0);
	CHECK_INT(c->cap, 256);			/* no shrinking under a QP */
	CHECK_INT(pw_destroy_cq(cq), 0);
	CHECK_INT(pw_close(ctx), 0);
}

/*
 * An application that never polls outgrows the commitment; pushes beyond
 * capacity grow the ring, from a wrapped state, and lose nothing.
 */
static void test_overflow_grows(void)
{
	enum { N = 5000 };
	struct pw_context *ctx = pw_open(NULL);
	struct pw_cq *cq;
	uint64_t pushed = 0, next = 0;

	REQUIRE(ctx);
	cq = pw_create_cq(ctx, 4, NULL, NULL, 0);
	REQUIRE(cq);
	push(cq, pushed++);
	push(cq, pushed++);
	push(cq, pushed++);
	CHECK_INT(poll_expect(cq, 2, &next), 2);	/* head = 2 */
	while (pushed < N)
		push(cq, pushed++);
	CHECK_INT(to_cq(cq)->count, N - 2);
	CHECK(to_cq(cq)->cap >= N - 2);
	CHECK_INT(cq->cqe, to_cq(cq)->cap);
	CHECK_INT(to_cq(cq)->overruns, 0);
	while (next < pushed && poll_expect(cq, 64, &next) > 0)
		;
	CHECK_INT(next, N);
	CHECK_INT(to_cq(cq)->count, 0);
	CHECK_INT(pw_destroy_cq(cq), 0);
	CHECK_INT(pw_close(ctx), 0);
}

/* ---- arguments ---------------------------------------------------------- */

static void test_poll_args(void)
{
	struct pw_context *ctx = pw_open(NULL);
	struct pw_cq *cq;
	struct pw_wc wc[2];
	uint64_t next = 0;

	REQUIRE(ctx);
	cq = pw_create_cq(ctx, 4, NULL, NULL, 0);
	REQUIRE(cq);
	CHECK_INT(pw_poll_cq(NULL, 1, wc), -EINVAL);
	CHECK_INT(pw_poll_cq(cq, -1, wc), -EINVAL);
	CHECK_INT(pw_poll_cq(cq, 1, NULL), -EINVAL);
	CHECK_INT(pw_poll_cq(cq, 0, NULL), 0);
	CHECK_INT(pw_poll_cq(cq, 2, wc), 0);		/* empty */
	push(cq, 0);
	CHECK_INT(pw_poll_cq(cq, 0, wc), 0);		/* asks for none */
	CHECK_INT(pw_poll_cq(cq, 1, NULL), -EINVAL);	/* and keeps it */
	CHECK_INT(to_cq(cq)->count, 1);
	CHECK_INT(poll_expect(cq, 2, &next), 1);
	CHECK_INT(pw_destroy_cq(cq), 0);
	CHECK_INT(pw_destroy_cq(NULL), -EINVAL);
	CHECK_INT(pw_close(ctx), 0);
}

static void test_create_args(void)
{
	struct pw_context *ctx = pw_open(NULL), *ctx2 = pw_open(NULL);
	struct pw_comp_channel *ch2;
	struct pw_cq *cq;
	int marker;

	REQUIRE(ctx && ctx2);
	ch2 = pw_create_comp_channel(ctx2);
	REQUIRE(ch2);
	CHECK(ch2->fd >= 0);
	CHECK_PTR(ch2->context, ctx2);
	CHECK_NULL_ERRNO(pw_create_cq(NULL, 4, NULL, NULL, 0), EINVAL);
	CHECK_NULL_ERRNO(pw_create_cq(ctx, 0, NULL, NULL, 0), EINVAL);
	CHECK_NULL_ERRNO(pw_create_cq(ctx, -1, NULL, NULL, 0), EINVAL);
	CHECK_NULL_ERRNO(pw_create_cq(ctx, PW_MAX_CQE + 1, NULL, NULL, 0), EINVAL);
	/* a channel of another context */
	CHECK_NULL_ERRNO(pw_create_cq(ctx, 4, NULL, ch2, 0), EINVAL);
	CHECK_NULL_ERRNO(pw_create_comp_channel(NULL), EINVAL);
	CHECK_INT(pw_destroy_comp_channel(NULL), -EINVAL);
	CHECK_INT(pw_req_notify_cq(NULL, 0), -EINVAL);

	cq = pw_create_cq(ctx, 1, &marker, NULL, 0);
	REQUIRE(cq);
	CHECK_PTR(cq->context, ctx);
	CHECK_PTR(cq->cq_context, &marker);
	CHECK_PTR(cq->channel, NULL);
	CHECK_INT(cq->cqe, 1);
	/* no channel, nothing to arm */
	CHECK_INT(pw_req_notify_cq(cq, 0), -EINVAL);
	CHECK_INT(pw_destroy_cq(cq), 0);

	CHECK_INT(pw_destroy_comp_channel(ch2), 0);
	CHECK_INT(pw_close(ctx2), 0);
	CHECK_INT(pw_close(ctx), 0);
}

/* ---- channels ----------------------------------------------------------- */

struct chan_env {
	struct pw_context *ctx;
	struct pw_comp_channel *ch;
	struct pw_cq *cq;
	int marker;
};

static bool chan_open(struct chan_env *e)
{
	e->ctx = pw_open(NULL);
	if (!e->ctx)
		return false;
	e->ch = pw_create_comp_channel(e->ctx);
	if (!e->ch)
		return false;
	e->cq = pw_create_cq(e->ctx, 16, &e->marker, e->ch, 0);
	return e->cq != NULL;
}

static void chan_close(struct chan_env *e)
{
	if (e->cq)
		CHECK_INT(pw_destroy_cq(e->cq), 0);
	if (e->ch)
		CHECK_INT(pw_destroy_comp_channel(e->ch), 0);
	if (e->ctx)
		CHECK_INT(pw_close(e->ctx), 0);
}

/* Take one event and check it names @want with its cq_context. */
static void expect_event(struct pw_comp_channel *ch, struct pw_cq *want)
{
	struct pw_cq *got = NULL;
	void *cctx = NULL;
	int ret = pw_get_cq_event(ch, &got, &cctx, 0);

	if (ret != 0) {
		UNIT_FAIL("pw_get_cq_event = %d, want an event of cq %p", ret,
			  (void *)want);
		return;
	}
	CHECK_PTR(got, want);
	CHECK_PTR(cctx, want->cq_context);
	pw_ack_cq_events(got, 1);
}

static void expect_no_event(struct pw_comp_channel *ch)
{
	struct pw_cq *got = NULL;
	void *cctx = NULL;

	CHECK(!fd_readable(ch->fd));
	CHECK_INT(pw_get_cq_event(ch, &got, &cctx, 0), -EAGAIN);
	CHECK_PTR(got, NULL);
}

/*
 * Arm, push: the fd becomes readable and the event names the CQ and its
 * context. One arm is one event; unarmed pushes are silent.
 */
static void test_notify_channel(void)
{
	struct chan_env e = { 0 };
	uint64_t next = 0;

	REQUIRE(chan_open(&e));
	CHECK_PTR(e.cq->channel, e.ch);
	push(e.cq, 0);				/* not armed: silent */
	expect_no_event(e.ch);

	CHECK_INT(pw_req_notify_cq(e.cq, 0), 0);
	expect_no_event(e.ch);			/* arming alone fires nothing */
	push(e.cq, 1);
	CHECK(fd_readable(e.ch->fd));
	expect_event(e.ch, e.cq);
	expect_no_event(e.ch);

	push(e.cq, 2);				/* the arm was used up */
	expect_no_event(e.ch);

	/* arming twice before a completion still gives one event */
	CHECK_INT(pw_req_notify_cq(e.cq, 0), 0);
	CHECK_INT(pw_req_notify_cq(e.cq, 0), 0);
	push(e.cq, 3);
	push(e.cq, 4);
	expect_event(e.ch, e.cq);
	expect_no_event(e.ch);

	/* events do not consume completions */
	CHECK_INT(poll_expect(e.cq, 16, &next), 5);
	CHECK_INT(to_cq(e.cq)->events_acked, 2);
	chan_close(&e);
}

/*
 * Solicited-only arming ignores plain successes, fires on a solicited one
 * and on any error; an "all" arm is not narrowed by a later solicited one.
 */
static void test_solicited_only(void)
{
	struct chan_env e = { 0 };
	struct pw_wc wc;

	REQUIRE(chan_open(&e));

	CHECK_INT(pw_req_notify_cq(e.cq, 1), 0);
	wc = mkwc(1, PW_WC_SUCCESS);
	pw_cq_push(to_cq(e.cq), &wc, false);
	expect_no_event(e.ch);
	wc = mkwc(2, PW_WC_SUCCESS);
	pw_cq_push(to_cq(e.cq), &wc, true);
	expect_event(e.ch, e.cq);
	expect_no_event(e.ch);

	CHECK_INT(pw_req_notify_cq(e.cq, 1), 0);
	wc = mkwc(3, PW_WC_SUCCESS);
	pw_cq_push(to_cq(e.cq), &wc, false);
	expect_no_event(e.ch);
	wc = mkwc(4, PW_WC_REM_ACCESS_ERR);	/* errors always fire */
	pw_cq_push(to_cq(e.cq), &wc, false);
	expect_event(e.ch, e.cq);
	expect_no_event(e.ch);

	CHECK_INT(pw_req_notify_cq(e.cq, 1), 0);
	wc = mkwc(5, PW_WC_WR_FLUSH_ERR);
	pw_cq_push(to_cq(e.cq), &wc, false);
	expect_event(e.ch, e.cq);

	/* all, then solicited-only: still all */
	CHECK_INT(pw_req_notify_cq(e.cq, 0), 0);
	CHECK_INT(pw_req_notify_cq(e.cq, 1), 0);
	wc = mkwc(6, PW_WC_SUCCESS);
	pw_cq_push(to_cq(e.cq), &wc, false);
	expect_event(e.ch, e.cq);
	/* solicited-only, then all: widened */
	CHECK_INT(pw_req_notify_cq(e.cq, 1), 0);
	CHECK_INT(pw_req_notify_cq(e.cq, 0), 0);
	wc = mkwc(7, PW_WC_SUCCESS);
	pw_cq_push(to_cq(e.cq), &wc, false);
	expect_event(e.ch, e.cq);
	expect_no_event(e.ch);

	CHECK_INT(to_cq(e.cq)->count, 7);	/* every completion queued */
	chan_close(&e);
}

/* Timeouts: 0 returns at once, a positive one waits about that long. */
static void test_event_timeout(void)
{
	struct chan_env e = { 0 };
	struct pw_cq *got = NULL;
	void *cctx = NULL;
	uint64_t t0, dt;

	REQUIRE(chan_open(&e));
	t0 = unit_now_ns();
	CHECK_INT(pw_get_cq_event(e.ch, &got, &cctx, 0), -EAGAIN);
	dt = unit_now_ns() - t0;
	CHECK(dt < 1000 * 1000000ull);	/* generous: shared, loaded CPUs */
	t0 = unit_now_ns();
	CHECK_INT(pw_get_cq_event(e.ch, &got, &cctx, 60), -EAGAIN);
	dt = unit_now_ns() - t0;
	CHECK(dt >= 50 * 1000000ull);
	CHECK(dt < 5000 * 1000000ull);
	CHECK_PTR(got, NULL);
	CHECK_INT(pw_get_cq_event(NULL, &got, &cctx, 0), -EINVAL);
	CHECK_INT(pw_get_cq_event(e.ch, NULL, &cctx, 0), -EINVAL);

	/* an event already queued is returned with timeout 0; ctx optional */
	CHECK_INT(pw_req_notify_cq(e.cq, 0), 0);
	push(e.cq, 0);
	CHECK_INT(pw_get_cq_event(e.ch, &got, NULL, 0), 0);
	CHECK_PTR(got, e.cq);
	pw_ack_cq_events(got, 1);
	chan_close(&e);
}

struct waiter {
	struct pw_comp_channel *ch;
	struct pw_cq *got;
	void *cctx;
	int ret;
};

static void *waiter_main(void *arg)
{
	struct waiter *w = arg;

	w->ret = pw_get_cq_event(w->ch, &w->got, &w->cctx, -1);
	return NULL;
}

/* A thread blocked with timeout -1 wakes when the armed CQ completes. */
static void test_event_blocking(void)
{
	struct chan_env e = { 0 };
	struct waiter w = { 0 };
	pthread_t th;

	REQUIRE(chan_open(&e));
	w.ch = e.ch;
	w.ret = 1;
	CHECK_INT(pw_req_notify_cq(e.cq, 0), 0);
	REQUIRE(pthread_create(&th, NULL, waiter_main, &w) == 0);
	unit_sleep_ms(50);
	push(e.cq, 0);
	REQUIRE(pthread_join(th, NULL) == 0);
	CHECK_INT(w.ret, 0);
	CHECK_PTR(w.got, e.cq);
	CHECK_PTR(w.cctx, &e.marker);
	pw_ack_cq_events(e.cq, 1);
	chan_close(&e);
}

/*
 * Events of several CQs on one channel come out in order; destroying a CQ
 * drops its queued events (no dangling CQ is ever returned) and keeps the
 * other CQs' events and the fd count consistent.
 */
static void test_destroy_drops_events(void)
{
	struct pw_context *ctx = pw_open(NULL);
	struct pw_comp_channel *ch;
	struct pw_cq *a, *b, *c;
	int ma, mb, mc;

	REQUIRE(ctx);
	ch = pw_create_comp_channel(ctx);
	REQUIRE(ch);
	a = pw_create_cq(ctx, 4, &ma, ch, 0);
	b = pw_create_cq(ctx, 4, &mb, ch, 0);
	c = pw_create_cq(ctx, 4, &mc, ch, 0);
	REQUIRE(a && b && c);

	/* queue: b, a (twice), c */
	CHECK_INT(pw_req_notify_cq(b, 0), 0);
	push(b, 0);
	CHECK_INT(pw_req_notify_cq(a, 0), 0);
	push(a, 0);
	CHECK_INT(pw_req_notify_cq(a, 0), 0);
	push(a, 1);
	CHECK_INT(pw_req_notify_cq(c, 0), 0);
	push(c, 0);

	/* dropping a (in the middle, with two events) leaves b then c */
	CHECK_INT(pw_destroy_cq(a), 0);
	expect_event(ch, b);
	expect_event(ch, c);
	expect_no_event(ch);

	/* dropping the only queued CQ empties the channel, fd included */
	CHECK_INT(pw_req_notify_cq(c, 0), 0);
	push(c, 1);
	CHECK(fd_readable(ch->fd));
	CHECK_INT(pw_destroy_cq(c), 0);
	expect_no_event(ch);

	/* the tail was fixed up: new events still queue and come out */
	CHECK_INT(pw_req_notify_cq(b, 0), 0);
	push(b, 1);
	expect_event(ch, b);
	expect_no_event(ch);

	CHECK_INT(pw_destroy_cq(b), 0);
	CHECK_INT(pw_destroy_comp_channel(ch), 0);
	CHECK_INT(pw_close(ctx), 0);
}

/* A channel with CQs attached, or a CQ with QPs attached, cannot go. */
static void test_busy_objects(void)
{
	struct chan_env e = { 0 };

	REQUIRE(chan_open(&e));
	CHECK_INT(pw_destroy_comp_channel(e.ch), -EBUSY);
	CHECK_INT(pw_close(e.ctx), -EBUSY);

	/* a QP attaching is what raises users; simulate one */
	atomic_fetch_add(&to_cq(e.cq)->users, 1);
	CHECK_INT(pw_destroy_cq(e.cq), -EBUSY);
	atomic_fetch_sub(&to_cq(e.cq)->users, 1);

	/* the refused destroys left both working */
	CHECK_INT(pw_req_notify_cq(e.cq, 0), 0);
	push(e.cq, 0);
	expect_event(e.ch, e.cq);

	CHECK_INT(pw_destroy_cq(e.cq), 0);
	e.cq = NULL;
	CHECK_INT(pw_destroy_comp_channel(e.ch), 0);
	e.ch = NULL;
	chan_close(&e);
}

struct producer {
	struct pw_cq *cq;
	uint64_t n;
};

static void *producer_main(void *arg)
{
	struct producer *p = arg;

	for (uint64_t i = 0; i < p->n; i++)
		push(p->cq, i);
	return NULL;
}

/* One producer thread, one polling thread: order kept, nothing lost. */
static void test_concurrent(void)
{
	struct pw_context *ctx = pw_open(NULL);
	struct producer p;
	pthread_t th;
	uint64_t next = 0;
	uint64_t t0;

	REQUIRE(ctx);
	p.cq = pw_create_cq(ctx, 8, NULL, NULL, 0);
	p.n = 200000;
	REQUIRE(p.cq);
	REQUIRE(pthread_create(&th, NULL, producer_main, &p) == 0);
	t0 = unit_now_ns();
	while (next < p.n && unit_now_ns() - t0 < 30ull * 1000000000ull)
		if (poll_expect(p.cq, 1 + (int)(next % 64), &next) < 0)
			break;
	REQUIRE(pthread_join(th, NULL) == 0);
	CHECK_INT(next, p.n);
	CHECK_INT(to_cq(p.cq)->overruns, 0);
	CHECK_INT(to_cq(p.cq)->count, 0);
	CHECK_INT(pw_destroy_cq(p.cq), 0);
	CHECK_INT(pw_close(ctx), 0);
}

static const struct unit_test tests[] = {
	{ "fifo_wrap", test_fifo_wrap },
	{ "commit_grows", test_commit_grows },
	{ "overflow_grows", test_overflow_grows },
	{ "poll_args", test_poll_args },
	{ "create_args", test_create_args },
	{ "notify_channel", test_notify_channel },
	{ "solicited_only", test_solicited_only },
	{ "event_timeout", test_event_timeout },
	{ "event_blocking", test_event_blocking },
	{ "destroy_drops_events", test_destroy_drops_events },
	{ "busy_objects", test_busy_objects },
	{ "concurrent", test_concurrent },
};

UNIT_MAIN(tests)
