/* SPDX-License-Identifier: MIT */
/*
 * Waiting for completions, blocking (the default: a completion channel,
 * pw_req_notify_cq + pw_get_cq_event) or busy-polling (opt-in). Nothing
 * spins by default, as in the library (docs/performance.md): both tools
 * share a machine's two cores with two processes' progress threads.
 */
#ifndef PAGEWIRE_TOOL_CQ_WAIT_H
#define PAGEWIRE_TOOL_CQ_WAIT_H

#include <stdbool.h>

#include <pagewire/pagewire.h>

/**
 * struct cq_waiter - a CQ plus, in blocking mode, its completion channel
 * @cq:      the completion queue
 * @channel: its channel (NULL when busy-polling)
 * @busy:    poll in a loop instead of sleeping on the channel
 * @armed:   pw_req_notify_cq() is pending, an event will come
 * @own_channel: @channel was created here (else shared, see
 *           cq_waiter_init_shared(), and destroyed by its owner)
 * @unacked: events received but not yet acknowledged (acked in batches)
 *
 * Several waiters may share one channel when ONE thread waits on all of
 * them: an event for another CQ met while waiting is credited to that
 * CQ's waiter (the CQ's cq_context is its waiter), which then re-arms
 * and polls before it sleeps again, so no completion is ever missed.
 */
struct cq_waiter {
	struct pw_cq *cq;
	struct pw_comp_channel *channel;
	bool busy;
	bool armed;
	bool own_channel;
	unsigned int unacked;
};

/**
 * cq_waiter_init() - create the CQ (and channel unless @busy)
 *
 * Return: 0, or a negative errno (pw_last_error() says more).
 */
int cq_waiter_init(struct cq_waiter *w, struct pw_context *ctx, int cqe,
		   bool busy);

/**
 * cq_waiter_init_shared() - create the CQ on an existing channel
 * @channel: shared channel (blocking), or NULL to busy-poll
 *
 * Return: 0, or a negative errno.
 */
int cq_waiter_init_shared(struct cq_waiter *w, struct pw_context *ctx,
			  int cqe, struct pw_comp_channel *channel);

/**
 * cq_waiter_arm() - arm @w's CQ for one event unless already armed
 *
 * Return: 1 when it was armed now (poll again before sleeping), 0 when
 * it already was, or a negative errno.
 */
int cq_waiter_arm(struct cq_waiter *w);

/**
 * cq_channel_wait() - sleep for one event of shared @channel
 * @timeout_ms: -1 = forever
 *
 * The event is credited to the waiter of its CQ (un-armed, acked in
 * batches). Return: 0, -ETIMEDOUT, or another negative errno.
 */
int cq_channel_wait(struct pw_comp_channel *channel, int timeout_ms);

/* Acknowledge outstanding events, destroy CQ and channel. Idempotent. */
void cq_waiter_destroy(struct cq_waiter *w);

/**
 * cq_wait() - wait until at least one completion is available, poll it
 * @wc:         output array
 * @n:          its size
 * @timeout_ms: give up after this long without a completion; -1 = never
 *
 * Return: the number of completions (> 0), -ETIMEDOUT, or another
 * negative errno from the library.
 */
int cq_wait(struct cq_waiter *w, struct pw_wc *wc, int n, int timeout_ms);

#endif /* PAGEWIRE_TOOL_CQ_WAIT_H */
