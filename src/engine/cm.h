/* SPDX-License-Identifier: MIT */
/*
 * Connection management internals (cm.c, listener.c, core/cm_event.c).
 *
 * The handshake runs in the progress engine, as the rest of the socket
 * work does, so that a connect or an accept never blocks the caller:
 *
 *   client                                   server (listener, engine)
 *   connect() ---------------------------->  accept4, half-open set
 *   CONNECT_REQ -------------------------->  whole: CONNECT_REQUEST event
 *                                            (or queued for pw_accept)
 *            <--------------------- CONNECT_REP (pw_accept_request)
 *                                   or CONNECT_REJ (pw_reject)
 *   CONNECT_RTU (both LINK) -------------->  live: ESTABLISHED
 *   live: ESTABLISHED
 *
 * The RTU (IBA CM's "ready to use") is why a server never goes live on a
 * connection whose client had already given up: pw_accept() waits for it.
 * pw_connect() and pw_accept() are this machinery plus a wait.
 */
#ifndef PW_ENGINE_CM_H
#define PW_ENGINE_CM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <pagewire/pagewire.h>

#include "wire/wire.h"

struct pw_context;
struct pw_engine;
struct pw_qp_i;
struct pw_listener;

#define PW_CM_REQ_MAX	(PW_WIRE_HDR_LEN + PW_WIRE_CONN_FIXED_LEN + PW_WIRE_MAX_PDATA)
#define PW_CM_ADDRS	4	/* addresses of a name tried in turn */

/* What the engine polls: a QP's socket, a listener's, a half-open one. */
enum pw_src_kind {
	PW_SRC_QP = 1,
	PW_SRC_LISTENER,
	PW_SRC_HALF_OPEN,
};

struct pw_eng_src {
	uint8_t kind;		/* enum pw_src_kind */
};

/* ------------------------------------------------------------------ */
/* Events (core/cm_event.c)                                            */
/* ------------------------------------------------------------------ */

/* One event, embedded in the object it is about: no allocation. */
struct pw_cm_ev_node {
	struct pw_cm_event ev;
	uint8_t pdata[PW_MAX_PRIVATE_DATA];
	struct pw_cm_channel_i *ch;
	struct pw_cm_ev_node *next;
	bool queued;		/* ch->lock */
	bool taken;		/* ch->lock: by pw_get_cm_event, not yet acked */
	/* ch->lock: its object was given up while taken: the ack frees it */
	void (*release)(struct pw_cm_ev_node *n);
};

struct pw_cm_channel_i {
	struct pw_cm_channel ibch;
	/*
	 * lock: protects the queue, every node's queued/taken flags and the
	 * eventfd's counter (1 iff the queue is non-empty); a leaf lock (the
	 * engine posts under qp->lock and l->lock). cond: an event arrived
	 * or one was acknowledged.
	 */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct pw_cm_ev_node *head, *tail;
	atomic_int users;	/* listeners and QPs reporting here */
};

static inline struct pw_cm_channel_i *to_cm_channel(struct pw_cm_channel *ch)
{
	return (struct pw_cm_channel_i *)ch;
}

/* Queue @n (filled by the caller) on its channel. */
void pw_cm_post(struct pw_cm_ev_node *n);
/*
 * Take back @n for good: dequeue it if queued, wait for its ack if taken.
 * pw_destroy_qp / pw_reject / pw_accept_request use it.
 */
void pw_cm_forget(struct pw_cm_ev_node *n);
/*
 * The same without waiting: true when the caller may free @n's object now;
 * false when the event is taken, and its pw_ack_cm_event() calls @release.
 */
bool pw_cm_detach(struct pw_cm_ev_node *n, void (*release)(struct pw_cm_ev_node *n));

/* ------------------------------------------------------------------ */
/* A QP's handshake (cm.c)                                             */
/* ------------------------------------------------------------------ */

enum pw_cm_state {
	PW_CM_NONE = 0,		/* not through pagewire's handshake (fuzz hook) */
	PW_CM_CONNECTING,	/* client: TCP connect in progress */
	PW_CM_REQ_SENT,		/* client: CONNECT_REQ going out, then awaiting the answer */
	PW_CM_REP_SENDING,	/* server: CONNECT_REP going out */
	PW_CM_WAIT_RTU,		/* server: awaiting CONNECT_RTU */
	PW_CM_LIVE,
	PW_CM_FAILED,		/* the handshake failed; the outcome was told */
};

/* CM events of one QP, at most one of each kind in its life */
enum { PW_CMEV_OUTCOME, PW_CMEV_DISCONNECTED, PW_CMEV_TIMEWAIT, PW_CMEV_N };

struct pw_qp_cm {
	/*
	 * enum pw_cm_state: written by the creating thread until the engine
	 * has the QP, then by the token holder; read by anyone (relaxed:
	 * what it guards has its own lock). The rest of the handshake state
	 * is the token holder's.
	 */
	atomic_int st;
	bool client;
	uint64_t deadline_ns;		/* of the handshake */
	uint8_t out[PW_CM_REQ_MAX];	/* the CM message going out */
	uint32_t out_len, out_off;
	uint32_t in_got;		/* bytes of the answer in rx.buf */
	struct sockaddr_storage addrs[PW_CM_ADDRS];
	socklen_t addr_len[PW_CM_ADDRS];
	int naddr, ai;
	uint32_t my_psn;
	int conn_err;			/* client: the last connect attempt's -errno */
	bool bind_failed;		/* client: conn_err is src's bind() */
	struct sockaddr_storage src;	/* client: connect from here, if src_len */
	socklen_t src_len;
	uint32_t offered;		/* PW_WIRE_FEAT_* we offered */
	bool want_rtu;			/* server: the client will send CONNECT_RTU */
	struct pw_wire_conn peer;	/* server: the client's CONNECT_REQ */
	uint32_t peer_psn;
	/* fixed once the connection is up; read by pw_query_qp */
	struct sockaddr_storage local, remote;
	struct pw_cm_channel_i *ch;	/* events go there, or NULL */
	/* the outcome, for pw_connect / pw_accept: under ctx->cm_lock */
	bool done;
	int result;			/* 0 or -errno */
	char msg[160];			/* pw_last_error() for the waiter */
	/* qp->lock: which events were posted */
	bool ev_sent[PW_CMEV_N];
	struct pw_cm_ev_node evn[PW_CMEV_N];
};

static inline int pw_cm_state(const struct pw_qp_cm *cm)
{
	return atomic_load_explicit(&cm->st, memory_order_relaxed);
}

static inline void pw_cm_set_state(struct pw_qp_cm *cm, int st)
{
	atomic_store_explicit(&cm->st, st, memory_order_relaxed);
}

/* Live: the handshake is over and it succeeded (or there was none). */
static inline bool pw_cm_live(const struct pw_qp_cm *cm)
{
	int st = pw_cm_state(cm);

	return st == PW_CM_LIVE || st == PW_CM_NONE;
}

/* engine.c (token holder): the QP joined the engine mid-handshake */
void pw_cm_qp_added(struct pw_qp_i *qp);
/* engine.c (token holder): events on a QP still in its handshake */
void pw_cm_qp_events(struct pw_qp_i *qp, uint32_t events);
/* engine.c (token holder): handshake deadlines */
uint64_t pw_cm_first_deadline(struct pw_engine *eng);
void pw_cm_timers(struct pw_engine *eng, uint64_t now);
/* qp.c (qp->lock held): the QP entered the error state */
void pw_cm_qp_error_locked(struct pw_qp_i *qp);
/* qp.c, tx.c, rx.c (qp->lock held): the write side shut, or EOF seen */
void pw_cm_qp_closing_locked(struct pw_qp_i *qp);
/* qp.c: destroy: no event is posted or pending any more */
void pw_cm_qp_gone(struct pw_qp_i *qp);

/* ------------------------------------------------------------------ */
/* Listeners (listener.c)                                              */
/* ------------------------------------------------------------------ */

/* An incoming connection whose CONNECT_REQ is not all here yet. */
struct pw_half_open {
	struct pw_eng_src src;
	struct pw_listener *l;
	int fd;			/* -1: a free slot */
	uint32_t got;		/* bytes of buf filled */
	uint64_t seq;		/* arrival order: the oldest goes first */
	uint64_t deadline;	/* ns: handshake_ms after accept4 */
	struct sockaddr_storage peer;
	uint8_t buf[PW_CM_REQ_MAX];
};

/* A whole, valid CONNECT_REQ, waiting for pw_accept_request / pw_reject. */
struct pw_conn_request {
	struct pw_context *ctx;
	struct pw_listener *l;		/* NULL once the listener is closed (l->lock) */
	/* l->lock: the listener's unanswered requests, and pw_accept's queue */
	struct pw_conn_request *all_next, *all_prev, *q_next;
	bool queued;
	int fd;
	struct pw_hdr hdr;
	struct pw_wire_conn conn;
	struct sockaddr_storage peer;
	struct pw_cm_ev_node evn;	/* CONNECT_REQUEST */
};

struct pw_listener {
	struct pw_eng_src src;
	struct pw_context *ctx;
	int fd;
	uint16_t port;
	struct pw_cm_channel_i *ch;	/* CONNECT_REQUEST events, or NULL: pw_accept */
	void *context;
	int readyfd;			/* pw_listener_fd(): a request waits for pw_accept */
	/*
	 * lock: protects the request lists and counts, accept_err and
	 * paused; taken by the token holder (accepting, reading requests)
	 * and by the application (pw_accept, answering a request, closing).
	 * cond: a request was queued for pw_accept, or accept_err was set.
	 * Never held while taking a QP's lock.
	 */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct pw_conn_request *reqs;	/* whole requests not yet answered */
	struct pw_conn_request *q_head, *q_tail; /* of those, waiting for pw_accept */
	uint32_t nreq;
	int accept_err;			/* accept4 out of fds with nothing pending */
	bool paused;			/* the set is full: the socket is not polled */
	bool ready_signalled;		/* readyfd's counter is 1 */
	/* token holder only */
	struct pw_half_open *ho;	/* max_ho slots */
	uint32_t nho, max_ho;
	uint64_t ho_seq;
	uint64_t starved_until;		/* accept4 ran out of fds: rest until then */
	struct pw_listener *eng_next;	/* the engine's list */
};

/* engine.c (token holder): the listener's socket or a half-open one */
void pw_listener_events(struct pw_listener *l, uint32_t events);
void pw_half_open_events(struct pw_half_open *ho, uint32_t events);
uint64_t pw_listener_first_deadline(struct pw_engine *eng);
void pw_listener_timers(struct pw_engine *eng, uint64_t now);
/* engine.c (token holder): the listener joins / leaves the engine */
void pw_listener_added(struct pw_listener *l);
void pw_listener_removed(struct pw_listener *l);
/* cm.c: a request is answered (accepted or rejected): out of its listener */
void pw_request_release(struct pw_conn_request *req);
/*
 * pw_accept(): the next queued request, waiting until @deadline (ns,
 * UINT64_MAX: forever). Return 0, -ETIMEDOUT, or -EMFILE (and the like)
 * when accepting ran out of fds with nothing pending.
 */
int pw_listener_take(struct pw_listener *l, uint64_t deadline,
		     struct pw_conn_request **out);
/* Parse what has arrived of a CONNECT_REQ (pure): missing bytes, 0, or -EPROTO. */
int pw_cm_req_parse(const uint8_t *buf, size_t len, struct pw_hdr *h,
		    struct pw_wire_conn *peer);
/* Latency: no Nagle; the engine never blocks. */
void pw_cm_tune_socket(int fd);

#endif /* PW_ENGINE_CM_H */
