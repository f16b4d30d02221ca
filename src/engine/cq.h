/* SPDX-License-Identifier: MIT */
/* Completion queues and completion channels. */
#ifndef PW_ENGINE_CQ_H
#define PW_ENGINE_CQ_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include <pagewire/pagewire.h>

#include "util/util.h"

struct pw_cq_i {
	struct pw_cq ibcq;
	/*
	 * lock: protects the ring, its capacity and the arm state. Producers
	 * are the progress thread and posting threads (flushes); the consumer
	 * is pw_poll_cq().
	 */
	pthread_mutex_t lock;
	struct pw_wc *ring;
	uint32_t cap;		/* entries allocated */
	uint32_t head;		/* oldest entry */
	uint32_t count;		/* entries in the ring */
	/*
	 * count as last published under the lock, read without it by a busy
	 * poller's emptiness check (a stale 0 costs one more pass; a stale
	 * non-zero only takes the lock).
	 */
	_Atomic uint32_t avail;
	uint32_t committed;	/* sum of max WRs of attached QPs */
	int armed;		/* 0, PW_CQ_ARM_ALL or PW_CQ_ARM_SOLICITED */
	atomic_int users;	/* attached QPs */
	struct pw_cq_i *ev_next; /* channel's event list (channel->lock) */
	unsigned int events_pending; /* queued on the channel, not yet read */
	unsigned int events_acked;
	unsigned int events_delivered;
	unsigned int overruns;	/* completions lost to a failed allocation */
};

#define PW_CQ_ARM_ALL		1
#define PW_CQ_ARM_SOLICITED	2

/*
 * The FIFO of CQs with pending events is the truth; the fd (an eventfd) is
 * a level: readable while events are queued, for applications that put it
 * in their own epoll. A thread blocked in pw_get_cq_event() drives the
 * engine itself and takes its events straight from the FIFO, so the fd is
 * not touched (two syscalls saved per event) while such a waiter exists.
 */
struct pw_channel_i {
	struct pw_comp_channel ibch;
	/* lock: protects the FIFO, signaled and waiters. */
	pthread_mutex_t lock;
	struct pw_cq_i *ev_head, *ev_tail;
	bool signaled;		/* the fd has been written and not drained */
	int waiters;		/* threads driving the engine for this channel */
	atomic_int users;	/* CQs using the channel */
};

static inline struct pw_cq_i *to_cq(struct pw_cq *cq)
{
	return container_of(cq, struct pw_cq_i, ibcq);
}

static inline struct pw_channel_i *to_channel(struct pw_comp_channel *ch)
{
	return container_of(ch, struct pw_channel_i, ibch);
}

/* Append one completion; @solicited marks a solicited receive. */
void pw_cq_push(struct pw_cq_i *cq, const struct pw_wc *wc, bool solicited);
/* Reserve room for @n more completions so that the CQ cannot overflow. */
int pw_cq_commit(struct pw_cq_i *cq, uint32_t n);
void pw_cq_uncommit(struct pw_cq_i *cq, uint32_t n);

#endif /* PW_ENGINE_CQ_H */
