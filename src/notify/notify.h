/* SPDX-License-Identifier: MIT */
/*
 * The notification protocol (docs/wire.md section 14): the 2008
 * proposal's "additional notification mechanism" that tells peers when a
 * mapping goes away, so that "the writes would not occur if the mapping
 * has not been established".
 *
 * Three parts, all bounded, none a correctness requirement (the target
 * still checks and faults every access):
 *  - target: invalidations of an MR range (notifier, pw_mr_invalidate,
 *    deregistration, the budget's reclaim) are queued per context, from
 *    any thread, without malloc (the notifier's handler calls in); the
 *    engine's token holder turns them into INVALIDATE messages on every
 *    NOTIFY QP of the MR's PD, coalesced per QP;
 *  - requester: a per-QP view of the peer's invalid ranges (PW_RVIEW_MAX
 *    entries); a WRITE/READ/ATOMIC into one is held, with every later
 *    request of the QP, behind a FAULT_IN until VALIDATE;
 *  - target: FAULT_IN faults the range in (the fault engine) and answers
 *    VALIDATE, or VALIDATE with REMOTE_ACCESS when it names nothing valid.
 */
#ifndef PW_NOTIFY_NOTIFY_H
#define PW_NOTIFY_NOTIFY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "paging/fault.h"

struct pw_context;
struct pw_pd;
struct pw_qp_i;
struct pw_mr_i;
struct pw_wqe;
struct pw_hdr;

#define PW_NRING_MAX	256	/* invalidations waiting for the engine, per context */
#define PW_NTQ_MAX	32	/* notifications queued for sending, per QP */
#define PW_NTQ_INVAL	14	/* of those, INVALIDATEs: room stays for 8 + 8 FAULT_IN/VALIDATE */
#define PW_RVIEW_MAX	64	/* invalid ranges a requester remembers, per QP */
/*
 * FAULT_INs a requester sends at once (the invalid ranges of the next
 * requests in its send queue: one round trip for all of them) and a
 * target serves at once per QP.
 */
#define PW_NT_BATCH	8
/* keys remembered per QP for INVALIDATE fan-out (struct pw_qp_notify) */
#define PW_NT_KEYS	8
/*
 * FAULT_INs naming a key, PD, right or range the peer may not use before
 * the QP is failed: an honest requester only asks for ranges it was told
 * of, so more than a few is probing for keys (docs/security.md).
 */
#define PW_NT_BAD_MAX	8

/* one invalidation waiting for the engine */
struct pw_ninv {
	const struct pw_pd *pd;	/* compared, never dereferenced */
	uint32_t rkey;
	uint64_t start, end;	/* [start, end) */
	uint64_t gen;
};

/*
 * Per context. lock: protects the ring; taken by whoever invalidates (the
 * notifier's handler among them) and by the engine's token holder; its
 * holders never allocate and never wait for anything else.
 */
struct pw_nring {
	pthread_mutex_t lock;
	struct pw_ninv e[PW_NRING_MAX];
	unsigned int n;
	atomic_bool pending;	/* n > 0, read without the lock */
	atomic_int senders;	/* QPs that send INVALIDATE (fast path: 0) */
	/* counters (relaxed) */
	atomic_uint_fast64_t sent, received, fault_in_sent, fault_in_received,
			     dropped;
	atomic_int_fast64_t views;	/* requester view entries, all QPs */
	_Atomic uint64_t last_rx_ns;	/* an INVALIDATE was last applied (inval_lat) */
};

/* one notification waiting to be sent on a QP */
struct pw_nmsg {
	uint8_t op;		/* PW_OP_INVALIDATE, _VALIDATE, _FAULT_IN */
	uint32_t token;
	uint32_t rkey;
	uint32_t imm;		/* VALIDATE syndrome, FAULT_IN flags */
	uint64_t start, len, gen;
};

/* the requester's view of a peer's invalid ranges (qp->lock) */
struct pw_rview_ent {
	uint32_t rkey;
	uint64_t start, end;
	uint64_t gen;
	uint64_t stamp;		/* last change: the oldest goes first */
};

/* Per QP, under qp->lock except where said. */
struct pw_qp_notify {
	bool send_inval;	/* our policy NOTIFY and the peer offers it */
	bool peer;		/* the peer offers NOTIFY: accept, use FAULT_IN */
	struct pw_nmsg q[PW_NTQ_MAX];
	unsigned int qhead, qcount;
	struct pw_rview_ent view[PW_RVIEW_MAX];
	unsigned int nview;
	uint64_t clock;
	/* requester: FAULT_INs out; requests wait for all their VALIDATEs */
	unsigned int nwait;
	uint32_t wait_token[PW_NT_BATCH];
	/*
	 * target (qp->lock): the last keys the peer used successfully. Only
	 * those MRs' INVALIDATEs go to it, so a peer never learns a key of
	 * its PD it was not given (docs/security.md); an older key it still
	 * uses faults as under STALL.
	 */
	uint32_t keys[PW_NT_KEYS];
	unsigned int keys_next;
	/* target: FAULT_INs for a key or range the peer may not touch */
	unsigned int bad_fault_in;
};

/* target: one FAULT_IN being faulted in (embedded in the QP) */
struct pw_nt_fault {
	struct pw_fault f;
	struct pw_qp_i *qp;
	uint32_t token;		/* qp->lock */
	bool busy;		/* qp->lock */
};

void pw_nring_init(struct pw_nring *r);
void pw_nring_fini(struct pw_nring *r);

/*
 * [a, b) of @mr is gone from its device page table (or the MR is going):
 * queue INVALIDATE for the peers. Any thread; no malloc, no waiting.
 */
void pw_notify_invalidated(struct pw_mr_i *mr, uint64_t a, uint64_t b);

/* The peer of @qp used @rkey successfully: tell it when that MR changes. */
void pw_notify_key_used_locked(struct pw_qp_i *qp, uint32_t rkey);

/* Token holder, once per batch: hand queued invalidations to the QPs. */
void pw_notify_reap(struct pw_context *ctx);

/* cm.c, when the QP goes live: @features are both sides' (AND) */
void pw_notify_qp_live(struct pw_qp_i *qp, uint32_t features);
/* qp.c, when the QP is destroyed (after the engine dropped it) */
void pw_notify_qp_gone(struct pw_qp_i *qp);

/* tx.c: set up the next queued notification as the message to send */
bool pw_notify_next_locked(struct pw_qp_i *qp);

/*
 * requester.c: may @w go out now? False when it waits for a FAULT_IN
 * (queued by this call if its range is invalid in the view).
 */
bool pw_notify_req_ok_locked(struct pw_qp_i *qp, const struct pw_wqe *w);

/* rx.c (token holder): a notification arrived */
void pw_notify_rx(struct pw_qp_i *qp, const struct pw_hdr *h);


#endif /* PW_NOTIFY_NOTIFY_H */
