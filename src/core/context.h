/* SPDX-License-Identifier: MIT */
/* The context (the "device") and protection domains. */
#ifndef PW_CORE_CONTEXT_H
#define PW_CORE_CONTEXT_H

#include <pthread.h>
#include <stdatomic.h>

#include <pagewire/pagewire.h>

#include "engine/engine.h"
#include "notify/notify.h"
#include "mr/mr.h"
#include "paging/budget.h"
#include "paging/fault.h"
#include "util/util.h"

/*
 * Limits against a dead or hostile peer (docs/limits.md). The dead-peer
 * bound defaults to 30 s: by default no outstanding WR waits longer than
 * that for a peer that has died (docs/limits.md, "The dead-peer bound").
 */
#define PW_DEF_PEER_TIMEOUT_MS	30000
/*
 * Keepalive counts whole seconds and cm.c keeps one probe interval of the
 * bound for the last probe: from 2 s on, the user timeout is >= half the
 * bound. Up to 1 h, the first probe (half the bound) fits TCP_KEEPIDLE.
 */
#define PW_MIN_PEER_TIMEOUT_MS	2000
#define PW_MAX_PEER_TIMEOUT_MS	3600000
#define PW_DEF_HALF_OPEN	64
#define PW_MAX_HALF_OPEN	4096
#define PW_DEF_HANDSHAKE_MS	5000

struct pw_context {
	struct pw_engine engine;
	struct pw_keytable keys;
	struct pw_fault_engine faults;	/* ODP faults, off the progress thread */
	/*
	 * obj_lock: protects the object counters below and the pinned-MR
	 * list. Never taken on the data path.
	 */
	pthread_mutex_t obj_lock;
	int npd, ncq, nchannel, nlistener, ncm_channel;
	struct pw_mr_i *pinned;	/* pinned MRs, for overlap-aware munlock */
	atomic_uint next_qpn;
	uint32_t fault_policy;	/* enum pw_fault_policy: the QPs' default */
	bool no_notify;		/* PW_CONTEXT_NO_NOTIFY: do not offer NOTIFY */
	bool no_link;		/* PW_CONTEXT_NO_LINK: do not offer LINK */
	/* limits (docs/limits.md); fixed at pw_open */
	uint32_t peer_timeout_ms;	/* dead-peer bound of the connections */
	uint32_t max_half_open;		/* per listener, in the handshake */
	uint32_t handshake_ms;		/* per incoming connection */
	/* counters of the limits above (pw_stats) */
	atomic_uint_fast64_t conn_dropped, conn_failed, rd_overrun;
	/*
	 * cm_lock: guards every QP's handshake outcome (qp->cm.done,
	 * .result, .msg); cm_cond: one became known (pw_connect and
	 * pw_accept wait on it). A leaf lock.
	 */
	pthread_mutex_t cm_lock;
	pthread_cond_t cm_cond;
	/* transport liveness (engine/live.c; pw_stats) */
	atomic_uint_fast64_t hb_sent, hb_received, peer_timeouts, stops;
	struct pw_nring nring;	/* invalidations for the peers (notify.h) */
	struct pw_budget budget; /* the ODP memory budget (paging/budget.h) */
	/*
	 * Asynchronous events (core/async.c). async_lock: protects the
	 * queue and the eventfd's counter (1 iff the queue is non-empty);
	 * async_cond: an event arrived, or one was acknowledged. The
	 * notifier's handler takes the lock briefly and never waits here.
	 */
	pthread_mutex_t async_lock;
	pthread_cond_t async_cond;
	struct pw_async_node *async_head, *async_tail;
	/*
	 * Spare nodes and the raw blocks they come from (async_lock): the
	 * handler posts without malloc (util.h, "Raw memory").
	 */
	struct pw_async_node *async_free;
	struct pw_async_slab *async_slabs;
	int async_fd;
	atomic_uint_fast64_t async_lost;	/* not queued: no memory */
};

int pw_async_init(struct pw_context *ctx);
void pw_async_fini(struct pw_context *ctx);
void pw_async_post_mr(struct pw_context *ctx, enum pw_event_type type,
		      struct pw_mr_i *mr, uint64_t offset, uint64_t length);
void pw_async_forget_mr(struct pw_context *ctx, struct pw_mr_i *mr);
void pw_async_post_qp(struct pw_context *ctx, enum pw_event_type type,
		      struct pw_qp *qp, enum pw_qp_cause cause);
void pw_async_forget_qp(struct pw_context *ctx, struct pw_qp *qp);

struct pw_pd_i {
	struct pw_pd ibpd;
	atomic_int users;	/* MRs and QPs in this PD */
};

static inline struct pw_pd_i *to_pd(struct pw_pd *pd)
{
	return container_of(pd, struct pw_pd_i, ibpd);
}

#endif /* PW_CORE_CONTEXT_H */
