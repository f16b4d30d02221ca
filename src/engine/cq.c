/* SPDX-License-Identifier: MIT */
/*
 * Completion queues and channels. A CQ reserves room for every WR of every
 * QP attached to it (pw_cq_commit), so it can never overflow and no
 * completion is ever lost ("nothing lost"); the channel is an eventfd in
 * semaphore mode, one count per event, so its fd works in epoll.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/context.h"
#include "engine/cq.h"

/*
 * Make the fd's level match the FIFO: readable while events are queued and
 * no driving waiter will take them itself.
 */
static void fd_sync_locked(struct pw_channel_i *ch)
{
	uint64_t v = 1;
	bool want = ch->ev_head && !ch->waiters;

	if (want == ch->signaled)
		return;
	if (want) {
		if (write(ch->ibch.fd, &v, sizeof(v)) != sizeof(v))
			return;
	} else if (read(ch->ibch.fd, &v, sizeof(v)) != sizeof(v)) {
		return;
	}
	ch->signaled = want;
}

static int cq_resize_locked(struct pw_cq_i *cq, uint32_t want)
{
	struct pw_wc *n;
	uint32_t ncap = pw_roundup_pow2(want);

	if (ncap <= cq->cap)
		return 0;
	n = malloc((size_t)ncap * sizeof(*n));
	if (!n)
		return -ENOMEM;
	for (uint32_t i = 0; i < cq->count; i++)
		n[i] = cq->ring[(cq->head + i) & (cq->cap - 1)];
	free(cq->ring);
	cq->ring = n;
	cq->cap = ncap;
	cq->head = 0;
	cq->ibcq.cqe = (int)ncap;
	return 0;
}

struct pw_comp_channel *pw_create_comp_channel(struct pw_context *ctx)
{
	struct pw_channel_i *ch;

	if (!ctx) {
		errno = EINVAL;
		return NULL;
	}
	ch = calloc(1, sizeof(*ch));
	if (!ch) {
		errno = ENOMEM;
		return NULL;
	}
	ch->ibch.context = ctx;
	ch->ibch.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (ch->ibch.fd < 0) {
		int e = errno;

		free(ch);
		errno = e;
		return NULL;
	}
	pthread_mutex_init(&ch->lock, NULL);
	pthread_mutex_lock(&ctx->obj_lock);
	ctx->nchannel++;
	pthread_mutex_unlock(&ctx->obj_lock);
	return &ch->ibch;
}

int pw_destroy_comp_channel(struct pw_comp_channel *ibch)
{
	struct pw_channel_i *ch;
	struct pw_context *ctx;

	if (!ibch)
		return -EINVAL;
	ch = to_channel(ibch);
	if (atomic_load(&ch->users) > 0)
		return -EBUSY;
	ctx = ibch->context;
	close(ibch->fd);
	pthread_mutex_destroy(&ch->lock);
	free(ch);
	pthread_mutex_lock(&ctx->obj_lock);
	ctx->nchannel--;
	pthread_mutex_unlock(&ctx->obj_lock);
	return 0;
}

struct pw_cq *pw_create_cq(struct pw_context *ctx, int cqe, void *cq_context,
			   struct pw_comp_channel *channel, int comp_vector)
{
	struct pw_cq_i *cq;

	if (!ctx || cqe < 1 || cqe > PW_MAX_CQE ||
	    (channel && channel->context != ctx)) {
		errno = EINVAL;
		return NULL;
	}
	cq = calloc(1, sizeof(*cq));
	if (!cq) {
		errno = ENOMEM;
		return NULL;
	}
	pthread_mutex_init(&cq->lock, NULL);
	if (cq_resize_locked(cq, (uint32_t)cqe)) {
		free(cq);
		errno = ENOMEM;
		return NULL;
	}
	cq->ibcq.context = ctx;
	cq->ibcq.channel = channel;
	cq->ibcq.cq_context = cq_context;
	if (channel)
		atomic_fetch_add(&to_channel(channel)->users, 1);
	pthread_mutex_lock(&ctx->obj_lock);
	ctx->ncq++;
	pthread_mutex_unlock(&ctx->obj_lock);
	return &cq->ibcq;
}

int pw_destroy_cq(struct pw_cq *ibcq)
{
	struct pw_cq_i *cq;
	struct pw_context *ctx;

	if (!ibcq)
		return -EINVAL;
	cq = to_cq(ibcq);
	if (atomic_load(&cq->users) > 0)
		return -EBUSY;
	ctx = ibcq->context;
	if (ibcq->channel) {
		struct pw_channel_i *ch = to_channel(ibcq->channel);

		/* drop events still queued for this CQ */
		pthread_mutex_lock(&ch->lock);
		for (struct pw_cq_i **pp = &ch->ev_head; *pp;) {
			if (*pp == cq) {
				*pp = cq->ev_next;
				cq->events_pending = 0;
				continue;
			}
			pp = &(*pp)->ev_next;
		}
		ch->ev_tail = NULL;
		for (struct pw_cq_i *c = ch->ev_head; c; c = c->ev_next)
			ch->ev_tail = c;
		fd_sync_locked(ch);
		pthread_mutex_unlock(&ch->lock);
		atomic_fetch_sub(&ch->users, 1);
	}
	pthread_mutex_destroy(&cq->lock);
	free(cq->ring);
	free(cq);
	pthread_mutex_lock(&ctx->obj_lock);
	ctx->ncq--;
	pthread_mutex_unlock(&ctx->obj_lock);
	return 0;
}

int pw_cq_commit(struct pw_cq_i *cq, uint32_t n)
{
	int ret;

	pthread_mutex_lock(&cq->lock);
	ret = cq_resize_locked(cq, cq->committed + n);
	if (!ret)
		cq->committed += n;
	pthread_mutex_unlock(&cq->lock);
	return ret;
}

void pw_cq_uncommit(struct pw_cq_i *cq, uint32_t n)
{
	pthread_mutex_lock(&cq->lock);
	cq->committed -= n;
	pthread_mutex_unlock(&cq->lock);
}

static void channel_notify(struct pw_cq_i *cq)
{
	struct pw_channel_i *ch = to_channel(cq->ibcq.channel);
	struct pw_engine *eng = &cq->ibcq.context->engine;
	bool kick;

	pthread_mutex_lock(&ch->lock);
	if (!cq->events_pending) {
		cq->ev_next = NULL;
		if (ch->ev_tail)
			ch->ev_tail->ev_next = cq;
		else
			ch->ev_head = cq;
		ch->ev_tail = cq;
	}
	cq->events_pending++;
	fd_sync_locked(ch);
	/* a driving waiter sleeps in epoll_wait: wake it unless it is us */
	kick = ch->waiters && !pw_engine_driving(eng);
	pthread_mutex_unlock(&ch->lock);
	if (kick)
		pw_engine_kick(eng);
}

void pw_cq_push(struct pw_cq_i *cq, const struct pw_wc *wc, bool solicited)
{
	bool notify = false;

	pthread_mutex_lock(&cq->lock);
	/*
	 * Commitments cover every WR a QP can have posted; an application
	 * that never polls can still outgrow them (a CQ overrun in verbs), so
	 * grow rather than lose a completion.
	 */
	if (cq->count == cq->cap && cq_resize_locked(cq, cq->cap * 2) != 0) {
		cq->overruns++;
		pthread_mutex_unlock(&cq->lock);
		return;
	}
	cq->ring[(cq->head + cq->count) & (cq->cap - 1)] = *wc;
	cq->count++;
	atomic_store_explicit(&cq->avail, cq->count, memory_order_release);
	if (cq->armed && cq->ibcq.channel &&
	    (cq->armed == PW_CQ_ARM_ALL || solicited ||
	     wc->status != PW_WC_SUCCESS)) {
		cq->armed = 0;
		notify = true;
	}
	pthread_mutex_unlock(&cq->lock);
	if (notify)
		channel_notify(cq);
}

static int cq_pop(struct pw_cq_i *cq, int num_entries, struct pw_wc *wc)
{
	int n = 0;

	pthread_mutex_lock(&cq->lock);
	while (n < num_entries && cq->count) {
		wc[n++] = cq->ring[cq->head];
		cq->head = (cq->head + 1) & (cq->cap - 1);
		cq->count--;
	}
	atomic_store_explicit(&cq->avail, cq->count, memory_order_release);
	pthread_mutex_unlock(&cq->lock);
	return n;
}

static bool cq_nonempty(void *arg)
{
	struct pw_cq_i *cq = arg;

	return atomic_load_explicit(&cq->avail, memory_order_acquire) != 0;
}

int pw_poll_cq(struct pw_cq *ibcq, int num_entries, struct pw_wc *wc)
{
	struct pw_cq_i *cq;
	int n;

	if (!ibcq || num_entries < 0 || (num_entries && !wc))
		return -EINVAL;
	cq = to_cq(ibcq);
	/* an empty CQ is told without its lock (the busy-poll loop) */
	n = cq_nonempty(cq) ? cq_pop(cq, num_entries, wc) : 0;
	if (!ibcq->context->engine.busy || !num_entries)
		return n;
	/* PW_PROGRESS=busy: an empty poll runs one non-blocking engine pass */
	if (!n) {
		if (pw_engine_drive(&ibcq->context->engine, 0, cq_nonempty, cq) > 0)
			n = cq_pop(cq, num_entries, wc);
	} else if (pw_engine_poll_found(&ibcq->context->engine)) {
		/*
		 * The progress thread filled this CQ: take the engine back, or
		 * a poller that is never empty-handed (every op signalled, a
		 * stream of large WRITEs) leaves it there for good, a wakeup
		 * of that thread and a lock hand-off with the poster per
		 * completion (measured: two context switches per 1 MiB WRITE).
		 */
		pw_engine_drive(&ibcq->context->engine, 0, cq_nonempty, cq);
	}
	return n;
}

int pw_req_notify_cq(struct pw_cq *ibcq, int solicited_only)
{
	struct pw_cq_i *cq;

	if (!ibcq || !ibcq->channel)
		return -EINVAL;
	cq = to_cq(ibcq);
	pthread_mutex_lock(&cq->lock);
	/* a pending "all" arm is not narrowed by a solicited-only request */
	if (cq->armed != PW_CQ_ARM_ALL)
		cq->armed = solicited_only ? PW_CQ_ARM_SOLICITED : PW_CQ_ARM_ALL;
	pthread_mutex_unlock(&cq->lock);
	return 0;
}

static int wait_fd(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int r;

	do {
		r = poll(&p, 1, timeout_ms);
	} while (r < 0 && errno == EINTR);
	return r > 0 ? 0 : r == 0 ? -EAGAIN : -errno;
}

static struct pw_cq_i *pop_event_locked(struct pw_channel_i *ch)
{
	struct pw_cq_i *cq = ch->ev_head;

	if (!cq)
		return NULL;
	if (--cq->events_pending == 0) {
		ch->ev_head = cq->ev_next;
		if (!ch->ev_head)
			ch->ev_tail = NULL;
	}
	cq->events_delivered++;
	return cq;
}

static bool channel_has_event(void *arg)
{
	struct pw_channel_i *ch = arg;
	bool r;

	pthread_mutex_lock(&ch->lock);
	r = ch->ev_head != NULL;
	pthread_mutex_unlock(&ch->lock);
	return r;
}

int pw_get_cq_event(struct pw_comp_channel *ibch, struct pw_cq **cqp,
		    void **cq_context, int timeout_ms)
{
	struct pw_channel_i *ch;
	struct pw_cq_i *cq;

	if (!ibch || !cqp)
		return -EINVAL;
	ch = to_channel(ibch);
	pthread_mutex_lock(&ch->lock);
	cq = pop_event_locked(ch);
	if (!cq && timeout_ms != 0) {
		/*
		 * Nothing yet: run the engine on this thread until an event
		 * comes, rather than sleeping while the progress thread works
		 * and then hands over (a hand-off costs ~4 us:
		 * docs/performance.md).
		 */
		int r;

		ch->waiters++;
		fd_sync_locked(ch);
		pthread_mutex_unlock(&ch->lock);
		r = pw_engine_drive(&ibch->context->engine, timeout_ms,
				    channel_has_event, ch);
		pthread_mutex_lock(&ch->lock);
		/* take ours before the fd may need to show what is left */
		cq = pop_event_locked(ch);
		ch->waiters--;
		if (!cq && r == -EBUSY) {
			/* another thread drives: wait for the fd like any poller */
			fd_sync_locked(ch);
			pthread_mutex_unlock(&ch->lock);
			r = wait_fd(ibch->fd, timeout_ms);
			pthread_mutex_lock(&ch->lock);
			cq = pop_event_locked(ch);
			if (r < 0 && r != -EAGAIN) {
				pthread_mutex_unlock(&ch->lock);
				return r;
			}
		}
	}
	fd_sync_locked(ch);
	pthread_mutex_unlock(&ch->lock);
	if (!cq)
		return -EAGAIN;
	*cqp = &cq->ibcq;
	if (cq_context)
		*cq_context = cq->ibcq.cq_context;
	return 0;
}

void pw_ack_cq_events(struct pw_cq *ibcq, unsigned int nevents)
{
	struct pw_cq_i *cq;

	if (!ibcq)
		return;
	cq = to_cq(ibcq);
	pthread_mutex_lock(&cq->lock);
	cq->events_acked += nevents;
	pthread_mutex_unlock(&cq->lock);
}
