/* SPDX-License-Identifier: MIT */
/*
 * Connection event channels (pw_get_cm_event, as rdma_get_cm_event): a
 * queue per channel and an eventfd whose counter is 1 exactly while the
 * queue is not empty, so the fd polls readable then. Events live in the
 * object they are about (engine/cm.h): posting never allocates, and
 * destroying the object takes its events back first.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/context.h"
#include "engine/cm.h"
#include "util/util.h"

static void fd_ready_locked(struct pw_cm_channel_i *ch, bool ready)
{
	uint64_t v = 1;

	if (ready)
		(void)!write(ch->ibch.fd, &v, sizeof(v));
	else
		(void)!read(ch->ibch.fd, &v, sizeof(v));
}

struct pw_cm_channel *pw_create_cm_channel(struct pw_context *ctx)
{
	struct pw_cm_channel_i *ch;

	if (!ctx) {
		errno = EINVAL;
		return NULL;
	}
	ch = calloc(1, sizeof(*ch));
	if (!ch) {
		errno = ENOMEM;
		return NULL;
	}
	ch->ibch.fd = eventfd(0, EFD_CLOEXEC);
	if (ch->ibch.fd < 0) {
		int err = errno;

		free(ch);
		errno = err;
		return NULL;
	}
	ch->ibch.context = ctx;
	pthread_mutex_init(&ch->lock, NULL);
	pthread_cond_init(&ch->cond, NULL);
	pthread_mutex_lock(&ctx->obj_lock);
	ctx->ncm_channel++;
	pthread_mutex_unlock(&ctx->obj_lock);
	return &ch->ibch;
}

int pw_destroy_cm_channel(struct pw_cm_channel *ibch)
{
	struct pw_cm_channel_i *ch;
	struct pw_context *ctx;

	if (!ibch)
		return -EINVAL;
	ch = to_cm_channel(ibch);
	ctx = ibch->context;
	if (atomic_load_explicit(&ch->users, memory_order_acquire) > 0) {
		pw_set_error("pw_destroy_cm_channel: %d listeners or QPs still report to it",
			     atomic_load(&ch->users));
		return -EBUSY;
	}
	close(ibch->fd);
	pthread_cond_destroy(&ch->cond);
	pthread_mutex_destroy(&ch->lock);
	pthread_mutex_lock(&ctx->obj_lock);
	ctx->ncm_channel--;
	pthread_mutex_unlock(&ctx->obj_lock);
	free(ch);
	return 0;
}

void pw_cm_post(struct pw_cm_ev_node *n)
{
	struct pw_cm_channel_i *ch = n->ch;

	pthread_mutex_lock(&ch->lock);
	if (n->queued || n->taken) {
		/* each node carries one event in its object's life */
		pthread_mutex_unlock(&ch->lock);
		return;
	}
	if (n->ev.private_data_len)
		n->ev.private_data = n->pdata;
	n->next = NULL;
	n->queued = true;
	if (ch->tail)
		ch->tail->next = n;
	else
		ch->head = n;
	ch->tail = n;
	if (ch->head == n)
		fd_ready_locked(ch, true);
	pthread_cond_broadcast(&ch->cond);
	pthread_mutex_unlock(&ch->lock);
}

static void dequeue_locked(struct pw_cm_channel_i *ch, struct pw_cm_ev_node *n)
{
	if (n->queued) {
		struct pw_cm_ev_node **pp, *prev = NULL;

		for (pp = &ch->head; *pp; prev = *pp, pp = &(*pp)->next)
			if (*pp == n) {
				*pp = n->next;
				break;
			}
		if (ch->tail == n)
			ch->tail = prev;
		n->queued = false;
		if (!ch->head)
			fd_ready_locked(ch, false);
	}
}

void pw_cm_forget(struct pw_cm_ev_node *n)
{
	struct pw_cm_channel_i *ch = n->ch;

	if (!ch)
		return;
	pthread_mutex_lock(&ch->lock);
	dequeue_locked(ch, n);
	while (n->taken)
		pthread_cond_wait(&ch->cond, &ch->lock);
	pthread_mutex_unlock(&ch->lock);
}

bool pw_cm_detach(struct pw_cm_ev_node *n, void (*release)(struct pw_cm_ev_node *n))
{
	struct pw_cm_channel_i *ch = n->ch;
	bool now;

	if (!ch)
		return true;
	pthread_mutex_lock(&ch->lock);
	dequeue_locked(ch, n);
	now = !n->taken;
	if (!now)
		n->release = release;
	pthread_mutex_unlock(&ch->lock);
	return now;
}

int pw_get_cm_event(struct pw_cm_channel *ibch, struct pw_cm_event **event)
{
	struct pw_cm_channel_i *ch;
	struct pw_cm_ev_node *n;
	int fl;

	if (!ibch || !event)
		return -EINVAL;
	ch = to_cm_channel(ibch);
	fl = fcntl(ibch->fd, F_GETFL);
	pthread_mutex_lock(&ch->lock);
	while (!ch->head) {
		if (fl >= 0 && (fl & O_NONBLOCK)) {
			pthread_mutex_unlock(&ch->lock);
			return -EAGAIN;
		}
		pthread_cond_wait(&ch->cond, &ch->lock);
	}
	n = ch->head;
	ch->head = n->next;
	if (!ch->head) {
		ch->tail = NULL;
		fd_ready_locked(ch, false);
	}
	n->queued = false;
	n->taken = true;
	pthread_mutex_unlock(&ch->lock);
	*event = &n->ev;
	return 0;
}

int pw_ack_cm_event(struct pw_cm_event *event)
{
	void (*release)(struct pw_cm_ev_node *n);
	struct pw_cm_ev_node *n;
	struct pw_cm_channel_i *ch;

	if (!event)
		return -EINVAL;
	n = container_of(event, struct pw_cm_ev_node, ev);
	ch = n->ch;
	pthread_mutex_lock(&ch->lock);
	if (!n->taken) {
		pthread_mutex_unlock(&ch->lock);
		return -EINVAL;
	}
	n->taken = false;
	release = n->release;
	pthread_cond_broadcast(&ch->cond);
	pthread_mutex_unlock(&ch->lock);
	/* its object was given up meanwhile (an answered request) */
	if (release)
		release(n);
	return 0;
}

const char *pw_cm_event_str(enum pw_cm_event_type type)
{
	switch (type) {
	case PW_CM_EVENT_CONNECT_REQUEST:
		return "CONNECT_REQUEST";
	case PW_CM_EVENT_CONNECT_ERROR:
		return "CONNECT_ERROR";
	case PW_CM_EVENT_UNREACHABLE:
		return "UNREACHABLE";
	case PW_CM_EVENT_REJECTED:
		return "REJECTED";
	case PW_CM_EVENT_ESTABLISHED:
		return "ESTABLISHED";
	case PW_CM_EVENT_DISCONNECTED:
		return "DISCONNECTED";
	case PW_CM_EVENT_TIMEWAIT_EXIT:
		return "TIMEWAIT_EXIT";
	}
	return "unknown";
}
