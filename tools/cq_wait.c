/* SPDX-License-Identifier: MIT */
/*
 * Completion waiting; see cq_wait.h.
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>

#include "cq_wait.h"
#include "tool_util.h"

/* Events are acknowledged in batches: each ack takes the CQ's lock. */
#define CQ_ACK_BATCH 64

int cq_waiter_init(struct cq_waiter *w, struct pw_context *ctx, int cqe,
		   bool busy)
{
	int err;

	w->cq = NULL;
	w->channel = NULL;
	w->busy = busy;
	w->armed = false;
	w->own_channel = false;
	w->unacked = 0;
	if (!busy) {
		w->channel = pw_create_comp_channel(ctx);
		if (!w->channel)
			return errno ? -errno : -ENOMEM;
		w->own_channel = true;
	}
	w->cq = pw_create_cq(ctx, cqe, w, w->channel, 0);
	if (!w->cq) {
		err = errno ? -errno : -ENOMEM;
		goto err_channel;
	}
	return 0;

err_channel:
	if (w->channel && w->own_channel)
		pw_destroy_comp_channel(w->channel);
	w->channel = NULL;
	w->own_channel = false;
	return err;
}

int cq_waiter_init_shared(struct cq_waiter *w, struct pw_context *ctx,
			  int cqe, struct pw_comp_channel *channel)
{
	w->busy = !channel;
	w->channel = channel;
	w->own_channel = false;
	w->armed = false;
	w->unacked = 0;
	w->cq = pw_create_cq(ctx, cqe, w, channel, 0);
	if (!w->cq) {
		w->channel = NULL;
		return errno ? -errno : -ENOMEM;
	}
	return 0;
}

void cq_waiter_destroy(struct cq_waiter *w)
{
	if (w->cq) {
		if (w->unacked)
			pw_ack_cq_events(w->cq, w->unacked);
		w->unacked = 0;
		pw_destroy_cq(w->cq);
		w->cq = NULL;
	}
	if (w->channel && w->own_channel)
		pw_destroy_comp_channel(w->channel);
	w->channel = NULL;
	w->own_channel = false;
}

/* Milliseconds left until @deadline_ns (never negative), or -1 for none. */
static int remaining_ms(uint64_t deadline_ns)
{
	uint64_t now = tool_now_ns();

	if (!deadline_ns)
		return -1;
	if (now >= deadline_ns)
		return 0;
	/* Round up so we never busy-loop on a sub-millisecond remainder. */
	uint64_t ms = (deadline_ns - now + 999999) / 1000000;
	return ms > INT_MAX ? INT_MAX : (int)ms;
}

static int cq_wait_busy(struct cq_waiter *w, struct pw_wc *wc, int n,
			uint64_t deadline_ns)
{
	for (unsigned int spins = 0;; spins++) {
		int r = pw_poll_cq(w->cq, n, wc);

		if (r)
			return r;
		/* Reading the clock every time would dominate the loop. */
		if (deadline_ns && (spins & 1023) == 1023 &&
		    tool_now_ns() >= deadline_ns)
			return -ETIMEDOUT;
	}
}

/* Credit one event to the waiter of its CQ (its cq_context). */
static void credit_event(struct pw_cq *ev_cq, void *ev_ctx)
{
	struct cq_waiter *ew = ev_ctx;

	if (!ew)
		return;
	ew->armed = false;
	if (++ew->unacked >= CQ_ACK_BATCH) {
		pw_ack_cq_events(ev_cq, ew->unacked);
		ew->unacked = 0;
	}
}

int cq_waiter_arm(struct cq_waiter *w)
{
	int r;

	if (w->armed)
		return 0;
	r = pw_req_notify_cq(w->cq, 0);
	if (r < 0)
		return r;
	w->armed = true;
	return 1;
}

int cq_channel_wait(struct pw_comp_channel *channel, int timeout_ms)
{
	struct pw_cq *ev_cq;
	void *ev_ctx;
	int r = pw_get_cq_event(channel, &ev_cq, &ev_ctx, timeout_ms);

	if (r == -EAGAIN)
		return -ETIMEDOUT;
	if (r < 0)
		return r;
	credit_event(ev_cq, ev_ctx);
	return 0;
}

int cq_wait(struct cq_waiter *w, struct pw_wc *wc, int n, int timeout_ms)
{
	uint64_t deadline_ns = 0;
	int r;

	if (timeout_ms >= 0)
		deadline_ns = tool_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	if (w->busy)
		return cq_wait_busy(w, wc, n, deadline_ns);

	for (;;) {
		struct pw_cq *ev_cq;
		void *ev_ctx;

		r = pw_poll_cq(w->cq, n, wc);
		if (r)
			return r;
		if (!w->armed) {
			r = pw_req_notify_cq(w->cq, 0);
			if (r < 0)
				return r;
			w->armed = true;
			/*
			 * As in verbs: a completion that arrived between the
			 * poll and the arm raises no event, so poll again.
			 */
			continue;
		}
		r = pw_get_cq_event(w->channel, &ev_cq, &ev_ctx,
				    remaining_ms(deadline_ns));
		if (r == -EAGAIN)
			return -ETIMEDOUT;
		if (r < 0)
			return r;
		/* With a shared channel the event may be another CQ's. */
		credit_event(ev_cq, ev_ctx);
	}
}
