/* SPDX-License-Identifier: MIT */
/*
 * Asynchronous events (pw_get_async_event, as ibv_get_async_event): a
 * queue per context, filled by the notifier's handler thread, and a
 * descriptor that polls readable while the queue is not empty (an
 * eventfd whose counter is 1 exactly then, kept so under the lock).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/context.h"
#include "engine/qp.h"
#include "util/util.h"

struct pw_async_node {
	struct pw_async_event ev;
	struct pw_async_node *next;
};

/*
 * Nodes come from raw blocks and go back to ctx->async_free, never to
 * malloc/free: the handler posts while an application thread may hold
 * malloc's lock and wait for it (util.h, "Raw memory"), and
 * pw_async_forget_mr drops nodes under async_lock, which the handler
 * takes. Blocks are returned by pw_async_fini.
 */
#define PW_ASYNC_SLAB_BYTES 4096

struct pw_async_slab {
	struct pw_async_slab *next;
	struct pw_async_node node[];
};

static struct pw_async_node *node_get_locked(struct pw_context *ctx)
{
	struct pw_async_node *n = ctx->async_free;

	if (!n) {
		struct pw_async_slab *s = pw_raw_alloc(PW_ASYNC_SLAB_BYTES);
		size_t cnt = (pw_raw_size(PW_ASYNC_SLAB_BYTES) - sizeof(*s)) /
			     sizeof(s->node[0]);

		if (!s)
			return NULL;
		s->next = ctx->async_slabs;
		ctx->async_slabs = s;
		for (size_t i = 0; i < cnt; i++) {
			s->node[i].next = ctx->async_free;
			ctx->async_free = &s->node[i];
		}
		n = ctx->async_free;
	}
	ctx->async_free = n->next;
	n->next = NULL;
	return n;
}

static void node_put_locked(struct pw_context *ctx, struct pw_async_node *n)
{
	n->next = ctx->async_free;
	ctx->async_free = n;
}

int pw_async_init(struct pw_context *ctx)
{
	ctx->async_fd = eventfd(0, EFD_CLOEXEC);
	if (ctx->async_fd < 0)
		return -errno;
	pthread_mutex_init(&ctx->async_lock, NULL);
	pthread_cond_init(&ctx->async_cond, NULL);
	return 0;
}

static void fd_set_ready_locked(struct pw_context *ctx, bool ready)
{
	uint64_t v = 1;

	/* the counter is 1 iff the queue is non-empty: neither call blocks */
	if (ready)
		(void)!write(ctx->async_fd, &v, sizeof(v));
	else
		(void)!read(ctx->async_fd, &v, sizeof(v));
}

void pw_async_fini(struct pw_context *ctx)
{
	struct pw_async_slab *s = ctx->async_slabs;

	/* queued and spare nodes all live in the blocks */
	while (s) {
		struct pw_async_slab *next = s->next;

		pw_raw_free(s, PW_ASYNC_SLAB_BYTES);
		s = next;
	}
	ctx->async_slabs = NULL;
	ctx->async_head = ctx->async_tail = ctx->async_free = NULL;
	close(ctx->async_fd);
	pthread_cond_destroy(&ctx->async_cond);
	pthread_mutex_destroy(&ctx->async_lock);
}

static bool is_qp_event(enum pw_event_type type)
{
	return type == PW_EVENT_QP_FATAL || type == PW_EVENT_QP_PEER_DISCONNECTED;
}

/* Queue @ev (async_lock held); a lost one (no memory) is counted. */
static void post_locked(struct pw_context *ctx, const struct pw_async_event *ev)
{
	struct pw_async_node *n = node_get_locked(ctx);

	if (!n) {
		atomic_fetch_add_explicit(&ctx->async_lost, 1, memory_order_relaxed);
		return;
	}
	n->ev = *ev;
	if (ctx->async_tail)
		ctx->async_tail->next = n;
	else
		ctx->async_head = n;
	ctx->async_tail = n;
	if (n == ctx->async_head)
		fd_set_ready_locked(ctx, true);
	pthread_cond_broadcast(&ctx->async_cond);
}

/* The notifier's handler (never blocks: a lost event is counted). */
void pw_async_post_mr(struct pw_context *ctx, enum pw_event_type type,
		      struct pw_mr_i *mr, uint64_t offset, uint64_t length)
{
	struct pw_async_event ev = { .event_type = type, .element.mr = &mr->ibmr,
				     .offset = offset, .length = length };

	pthread_mutex_lock(&ctx->async_lock);
	post_locked(ctx, &ev);
	pthread_mutex_unlock(&ctx->async_lock);
}

/* qp.c, with qp->lock held: async_lock is a leaf under it. */
void pw_async_post_qp(struct pw_context *ctx, enum pw_event_type type,
		      struct pw_qp *qp, enum pw_qp_cause cause)
{
	struct pw_async_event ev = { .event_type = type, .element.qp = qp,
				     .cause = cause };

	pthread_mutex_lock(&ctx->async_lock);
	post_locked(ctx, &ev);
	pthread_mutex_unlock(&ctx->async_lock);
}

/*
 * Drop the queued events of the object @elem (an MR or a QP, compared,
 * never dereferenced), then wait until *@unacked (its events taken but not
 * acknowledged) is 0.
 */
static void forget(struct pw_context *ctx, const void *elem, atomic_int *unacked)
{
	struct pw_async_node **pp, *prev = NULL;
	bool had;

	pthread_mutex_lock(&ctx->async_lock);
	had = ctx->async_head != NULL;
	for (pp = &ctx->async_head; *pp;) {
		struct pw_async_node *n = *pp;
		const void *e = is_qp_event(n->ev.event_type) ?
				(const void *)n->ev.element.qp :
				(const void *)n->ev.element.mr;

		if (e == elem) {
			*pp = n->next;
			node_put_locked(ctx, n);
			continue;
		}
		prev = n;
		pp = &n->next;
	}
	ctx->async_tail = prev;
	if (had && !ctx->async_head)
		fd_set_ready_locked(ctx, false);
	while (atomic_load_explicit(unacked, memory_order_acquire) > 0)
		pthread_cond_wait(&ctx->async_cond, &ctx->async_lock);
	pthread_mutex_unlock(&ctx->async_lock);
}

/* pw_dereg_mr: drop the MR's queued events, wait for taken ones' acks */
void pw_async_forget_mr(struct pw_context *ctx, struct pw_mr_i *mr)
{
	forget(ctx, &mr->ibmr, &mr->events_unacked);
}

/* pw_destroy_qp: the same for a QP's events */
void pw_async_forget_qp(struct pw_context *ctx, struct pw_qp *qp)
{
	forget(ctx, qp, &to_qp(qp)->events_unacked);
}

static atomic_int *unacked_of(const struct pw_async_event *ev)
{
	return is_qp_event(ev->event_type) ? &to_qp(ev->element.qp)->events_unacked :
	       &to_mr(ev->element.mr)->events_unacked;
}

int pw_get_async_fd(struct pw_context *ctx)
{
	return ctx ? ctx->async_fd : -EINVAL;
}

int pw_get_async_event(struct pw_context *ctx, struct pw_async_event *event)
{
	struct pw_async_node *n;
	int fl;

	if (!ctx || !event)
		return -EINVAL;
	fl = fcntl(ctx->async_fd, F_GETFL);
	pthread_mutex_lock(&ctx->async_lock);
	while (!ctx->async_head) {
		if (fl >= 0 && (fl & O_NONBLOCK)) {
			pthread_mutex_unlock(&ctx->async_lock);
			return -EAGAIN;
		}
		pthread_cond_wait(&ctx->async_cond, &ctx->async_lock);
	}
	n = ctx->async_head;
	ctx->async_head = n->next;
	if (!ctx->async_head) {
		ctx->async_tail = NULL;
		fd_set_ready_locked(ctx, false);
	}
	*event = n->ev;
	node_put_locked(ctx, n);
	atomic_fetch_add_explicit(unacked_of(event), 1, memory_order_relaxed);
	pthread_mutex_unlock(&ctx->async_lock);
	return 0;
}

void pw_ack_async_event(struct pw_async_event *event)
{
	struct pw_context *ctx;

	if (!event || !event->element.mr)
		return;
	ctx = is_qp_event(event->event_type) ? event->element.qp->context :
	      event->element.mr->context;
	pthread_mutex_lock(&ctx->async_lock);
	atomic_fetch_sub_explicit(unacked_of(event), 1, memory_order_release);
	pthread_cond_broadcast(&ctx->async_cond);
	pthread_mutex_unlock(&ctx->async_lock);
}

const char *pw_event_type_str(enum pw_event_type type)
{
	switch (type) {
	case PW_EVENT_MR_UNMAPPED:
		return "MR range unmapped";
	case PW_EVENT_MR_REMAPPED:
		return "MR range moved by mremap";
	case PW_EVENT_QP_FATAL:
		return "QP entered the error state";
	case PW_EVENT_QP_PEER_DISCONNECTED:
		return "peer disconnected the QP";
	}
	return "unknown event";
}

const char *pw_qp_cause_str(enum pw_qp_cause cause)
{
	switch (cause) {
	case PW_QP_CAUSE_NONE:
		return "none";
	case PW_QP_CAUSE_LOCAL_WR:
		return "a work request failed locally";
	case PW_QP_CAUSE_REMOTE_NAK:
		return "the peer refused a request";
	case PW_QP_CAUSE_RESPONDER:
		return "a request of the peer was refused";
	case PW_QP_CAUSE_RETRY_EXC:
		return "retries exhausted";
	case PW_QP_CAUSE_PROTOCOL:
		return "the peer broke the protocol";
	case PW_QP_CAUSE_PEER_DISCONNECTED:
		return "the peer disconnected";
	case PW_QP_CAUSE_PEER_CLOSED:
		return "the connection closed without a disconnect";
	case PW_QP_CAUSE_PEER_RESET:
		return "the connection was reset";
	case PW_QP_CAUSE_PEER_TIMEOUT:
		return "the peer did not answer within peer_timeout_ms";
	case PW_QP_CAUSE_STOPPED:
		return "this process was stopped longer than the peer waits";
	}
	return "unknown cause";
}
