/* SPDX-License-Identifier: MIT */
/*
 * Queue pair internals, shared by the requester (requester.c), responder
 * (responder.c), completer (completer.c), the socket framing (rx.c, tx.c)
 * and the verbs entry points (qp.c, cm.c). The split follows Linux rxe.
 */
#ifndef PW_ENGINE_QP_H
#define PW_ENGINE_QP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include <pagewire/pagewire.h>

#include "engine/cm.h"
#include "engine/cq.h"
#include "engine/live.h"
#include "mr/mr.h"
#include "notify/notify.h"
#include "paging/fault.h"
#include "util/util.h"
#include "wire/wire.h"

#define PW_DEF_WR		128
#define PW_DEF_SGE		4
#define PW_DEF_INLINE		64
#define PW_DEF_RD_ATOMIC	16
#define PW_MAX_RD_ATOMIC	128
#define PW_DEF_RNR_TIMER_US	200
#define PW_RX_STAGING		(64 * 1024)
#define PW_RX_BUDGET		(1024 * 1024)	/* bytes per QP per wakeup */
#define PW_RX_BIG		(16 * 1024)	/* payload after which reads peek */
#define PW_RX_PEEK		1024		/* staging read after a big payload */
#define PW_RX_LOWAT_MIN		(64 * 1024)	/* payload left that raises SO_RCVLOWAT */
#define PW_RX_LOWAT_MAX		(1024 * 1024)	/* highest wake threshold (rx.c) */
/*
 * ACK coalescing: a request with ACK_REQ (a signalled WR with nothing
 * posted behind it, one in a quarter of those in flight while a signalled
 * one waits, and every max(1, sq_max / PW_ACK_REQ_DIV)-th one, so that a
 * full send queue always has ACKs coming back: requester.c) is ACKed at
 * the end of the receive batch; others wait for PW_ACK_COALESCE requests
 * or PW_ACK_DELAY_NS, whichever comes first, or ride on a READ/ATOMIC response or NAK. The
 * delay is only a safety net: with 1 MiB messages arriving every ~250 us a
 * shorter one would ACK every message and wake the requester for nothing.
 */
#define PW_ACK_COALESCE		64
#define PW_ACK_REQ_DIV		4
#define PW_ACK_DELAY_NS		1000000ull

/* send queue entry: a posted send WR, kept until acknowledged */
struct pw_wqe {
	uint64_t wr_id;
	uint32_t psn;
	uint32_t length;	/* total payload bytes (READ: bytes to read) */
	uint8_t opcode;		/* enum pw_wr_opcode */
	uint8_t num_sge;
	bool signaled;
	bool fence;
	bool solicited;
	bool inlined;
	bool nt_asked;		/* NOTIFY: its FAULT_IN round is done (lock) */
	enum pw_wc_status status; /* local error found at post or tx time */
	uint32_t imm;
	uint32_t rkey;
	uint64_t raddr;
	uint64_t compare_add;
	uint64_t swap;
	struct pw_sge *sge;	/* slot storage, max_send_sge entries */
	uint8_t *inline_buf;	/* slot storage, max_inline bytes */
};

/* receive queue entry */
struct pw_rqe {
	uint64_t wr_id;
	uint32_t num_sge;
	struct pw_sge *sge;
};

/* a response queued by the responder, sent in PSN order */
struct pw_resp {
	uint8_t op;		/* PW_OP_NAK, PW_OP_READ_RESP, PW_OP_ATOMIC_RESP */
	uint32_t psn;
	uint32_t syndrome;	/* NAK */
	uint64_t val;		/* ATOMIC_RESP original value; NAK retry us */
	uint32_t rkey;		/* READ_RESP source */
	uint64_t addr;
	uint32_t len;
};

enum pw_rx_state { RX_HDR, RX_DATA, RX_TRAILER };
enum pw_rx_dst { DST_DISCARD, DST_PLACE };

/* Receive framing state. Owned by the progress thread alone: no lock. */
struct pw_rx {
	uint8_t *buf;		/* staging for headers and small payloads */
	uint32_t head, tail;
	enum pw_rx_state state;
	struct pw_hdr hdr;	/* message being received */
	enum pw_rx_dst dst;
	uint64_t left;		/* data bytes of this message still to come */
	uint64_t done;		/* data bytes consumed */
	/*
	 * DST_PLACE: where the data goes: the target MR range (keyed by the
	 * rkey) or the local SGEs of a receive / READ sink (keyed by lkeys),
	 * re-looked-up before every step.
	 */
	struct pw_kiov iov[PW_MAX_SGE];
	int niov;
	int iov_idx;
	size_t iov_off;
	bool skip;		/* dropped request (after a NAK): no side effects */
	bool fault;		/* the destination faulted or vanished mid-way */
	uint32_t err_syn;	/* responder: NAK syndrome decided at begin */
	enum pw_wc_status recv_status; /* responder: status for the recv WQE */
	uint32_t trailer_syn;	/* completer: READ_RESP trailer */
	/*
	 * dead and eof: written by the engine thread under qp->lock, which
	 * reads them without it; other threads (the connection manager's
	 * TIMEWAIT_EXIT test) read them under the lock.
	 */
	bool dead;		/* protocol error: discard until EOF */
	bool drained;		/* the last read came back short: socket empty */
	int lowat;		/* SO_RCVLOWAT in force (0 or 1: the default) */
	bool big;		/* the last message had a large payload (rx.c) */
	bool backlog;		/* the last read got all it asked for */
	bool eof;		/* the socket returned EOF or an error */
	/*
	 * STALL pipelining: payload bytes before this offset are in the page
	 * table (or need none); placement past it waits for qp->fault.
	 * UINT64_MAX when nothing is pending.
	 */
	uint64_t place_ok;
	uint64_t msg_seq;	/* messages begun: ties qp->fault to its message */
	uint64_t sock_read;	/* bytes read from the socket, ever */
	/*
	 * live.c: the stream up to this offset arrived while this process
	 * was stopped; a request there fails the QP (0: none).
	 */
	uint64_t stale_end;
};

enum pw_tx_kind { TX_NONE, TX_REQ, TX_RESP, TX_CTL /* a notification */ };

/* Transmit state of the message being written. Protected by qp->lock. */
struct pw_tx {
	enum pw_tx_kind kind;
	uint8_t hdr[PW_WIRE_HDR_LEN];
	uint32_t hdr_off;
	struct pw_kiov data[PW_MAX_SGE]; /* payload source, MR-checked per call */
	int ndata;
	int didx;
	size_t doff;
	uint64_t data_left;
	bool zero_fill;		/* READ_RESP source faulted: the rest is zeros */
	uint8_t trailer[PW_WIRE_READ_TRAILER_LEN];
	uint32_t trailer_len;
	uint32_t trailer_off;
	uint32_t syndrome;	/* READ_RESP trailer */
	struct pw_wqe *wqe;	/* TX_REQ: the request */
	bool resp_is_rd;	/* TX_RESP: a READ/ATOMIC response (credit) */
};

struct pw_qp_i {
	struct pw_qp ibqp;
	struct pw_eng_src src;	/* what the engine's epoll names */
	struct pw_context *ctx;
	int fd;
	atomic_int state;	/* enum pw_qp_state; written under lock */

	/*
	 * lock: protects the send queue, the receive queue, the response
	 * queue, tx state, retry timer and state transitions. Taken by posting
	 * threads and by the progress thread for short steps; never held
	 * across a blocking call. Lock order: qp->lock, then cq->lock.
	 */
	pthread_mutex_t lock;

	/* send queue: counters run freely, index = counter & (sq_cap - 1) */
	struct pw_wqe *sq;
	struct pw_sge *sq_sge;
	uint8_t *sq_inline;
	uint32_t sq_cap, sq_max;
	uint32_t req_no_ackreq;	/* lock: requests sent since the last ACK_REQ */
	bool ackreq_owed;	/* lock: a signalled one among them did not ask */
	uint32_t sq_head;	/* oldest WQE not yet completed */
	uint32_t sq_next;	/* next WQE to transmit */
	uint32_t sq_tail;	/* next free slot */
	uint32_t next_psn;
	uint32_t rd_out;	/* READ/ATOMIC sent, response pending */
	uint32_t rd_max;	/* min(our max_rd_atomic, peer's max_dest) */
	int rnr_left;		/* RNR retries left; < 0: infinite */
	int fault_left;		/* PAGE_FAULT NAKs left at the back-off cap (lock) */
	int fault_backoff;	/* PAGE_FAULT NAKs without progress: the back-off shift (lock) */
	/*
	 * DROP (token holder): a range whose background fault found no
	 * mapping; the resent request gets a remote access error instead of
	 * another PAGE_FAULT NAK.
	 */
	uint32_t drop_fail_key;
	uint64_t drop_fail_addr;
	bool drop_pending;	/* DROP: the background fault is in flight */
	uint64_t retry_at_ns;	/* transmit paused until (RNR timer); written
				 * only by the progress thread, under lock */

	/* receive queue */
	struct pw_rqe *rq;
	struct pw_sge *rq_sge;
	uint32_t rq_cap, rq_max;
	uint32_t rq_head, rq_tail;

	/* responder */
	uint32_t exp_psn;	/* next request PSN (progress thread) */
	bool nak_drop;		/* discarding until exp_psn is resent */
	bool ack_pending;	/* lock: executed requests not yet ACKed */
	uint32_t ack_psn;	/* lock */
	bool ack_now;		/* lock: send that ACK at the next flush */
	uint32_t unacked;	/* lock: requests covered by the pending ACK */
	uint64_t ack_at_ns;	/* delayed-ACK deadline; token holder only */
	struct pw_resp *resp;	/* lock: ring of queued responses */
	uint32_t resp_cap, resp_head, resp_count;
	uint32_t rd_in;		/* READ/ATOMIC responses queued or sending */
	uint32_t dest_rd_max;
	bool fatal_nak;		/* a fatal NAK is queued: send it, then shut */

	/* settings */
	uint32_t max_send_sge, max_recv_sge, max_inline;
	bool sq_sig_all;
	int rnr_retry;
	int retry_cnt;		/* PAGE_FAULT resends allowed */
	uint32_t fault_policy;	/* enum pw_fault_policy: STALL, DROP or NOTIFY */
	uint32_t peer_timeout_ms; /* dead-peer bound: cm.c sets the socket up */
	uint32_t features;	/* PW_WIRE_FEAT_* both sides set */
	uint32_t min_rnr_timer_us;

	struct pw_rx rx;
	struct pw_tx tx;
	/*
	 * EPOLLOUT armed: written under the lock; the busy-polling engine
	 * reads it without (a stale value costs one pass, not correctness).
	 */
	atomic_bool want_out;
	bool shut_wr;		/* write side shut down (lock) */
	bool in_epoll;		/* progress thread */
	bool in_engine;		/* on the engine's list (token holder) */
	/*
	 * STALL (PW_FAULT_STALL): a responder fault is pending; the socket is
	 * not read, so TCP backpressure holds the sender. Set and cleared by
	 * the token holder under the lock (the epoll interest depends on it).
	 */
	bool rx_stalled;
	struct pw_fault fault;	/* the pending STALL fault (token holder) */
	struct pw_fault drop_fault; /* DROP's background fault (token holder) */
	/* rx only (token holder): the op's pages were just faulted in */
	bool skip_residency;
	bool fault_busy;	/* qp->fault submitted, its done not yet run */
	uint64_t fault_msg;	/* rx.msg_seq of the message qp->fault is for */
	/*
	 * Local ODP: a request's source not in its page table is faulted in
	 * before the request goes out (the requester waits, RC order holds).
	 * Under the lock.
	 */
	struct pw_fault req_fault;
	bool req_fault_wait;
	bool req_src_done;	/* request req_fault_psn had its fault round */
	uint32_t req_fault_psn;
	uint64_t stall_start_ns;
	/* NOTIFY (notify.h): queue and view under the lock */
	struct pw_qp_notify nt;
	struct pw_nt_fault nt_fault[PW_NT_BATCH]; /* the peer's FAULT_INs */
	struct pw_live lv;	/* transport liveness (live.h) */
	struct pw_qp_cm cm;	/* its handshake and connection events (cm.h) */
	/* the error state: why (lock), and the completion-accurate drain */
	enum pw_qp_cause err_cause;
	bool drain;		/* lock: sent WQEs before drain_end wait for ACKs */
	uint32_t drain_end;	/* lock: SQ counter the drain stops at */
	struct pw_wqe *drain_culprit; /* lock: completes with drain_status */
	enum pw_wc_status drain_status;
	atomic_int events_unacked; /* async events taken, not yet acknowledged */
	struct pw_qp_i *eng_next;	/* engine list (progress thread) */
};

static inline struct pw_qp_i *to_qp(struct pw_qp *qp)
{
	return container_of(qp, struct pw_qp_i, ibqp);
}

static inline int pw_qp_get_state(struct pw_qp_i *qp)
{
	return atomic_load_explicit(&qp->state, memory_order_acquire);
}

static inline struct pw_wqe *pw_sq_at(struct pw_qp_i *qp, uint32_t ctr)
{
	return &qp->sq[ctr & (qp->sq_cap - 1)];
}

static inline struct pw_rqe *pw_rq_at(struct pw_qp_i *qp, uint32_t ctr)
{
	return &qp->rq[ctr & (qp->rq_cap - 1)];
}

static inline bool pw_wqe_is_rd(const struct pw_wqe *w)
{
	return w->opcode == PW_WR_RDMA_READ ||
	       w->opcode == PW_WR_ATOMIC_CMP_AND_SWP ||
	       w->opcode == PW_WR_ATOMIC_FETCH_AND_ADD;
}

/* qp.c */
struct pw_qp_i *pw_qp_create(struct pw_pd *pd, struct pw_qp_init_attr *attr,
			     int fd);
void pw_qp_free(struct pw_qp_i *qp);
/*
 * The error state, entered once, for @cause (enum pw_qp_cause: it is
 * reported as an async event unless the application itself ended the
 * QP). Every posted receive is flushed; the send queue:
 * - pw_qp_fail_locked: the WQE at sq_head (if any) completes with
 *   @head_status, every other one with PW_WC_WR_FLUSH_ERR;
 * - pw_qp_fail_at_locked: the same with @culprit (an outstanding WQE);
 * - pw_qp_fail_drain_locked: WRITEs and SENDs before @culprit that were
 *   sent wait for the peer's ACK first (completion accuracy, qp.c).
 * Failing a QP already in error ends its drain.
 */
void pw_qp_fail_locked(struct pw_qp_i *qp, enum pw_qp_cause cause,
		       enum pw_wc_status head_status);
void pw_qp_fail_at_locked(struct pw_qp_i *qp, enum pw_qp_cause cause,
			  struct pw_wqe *culprit, enum pw_wc_status status);
void pw_qp_fail_drain_locked(struct pw_qp_i *qp, enum pw_qp_cause cause,
			     struct pw_wqe *culprit, enum pw_wc_status status);
/* Complete what the drain held: @culprit's status, the rest flushed. */
void pw_qp_drain_end_locked(struct pw_qp_i *qp);
/*
 * completer.c, during a drain: the peer acknowledged every request before
 * @psn; with !@more nothing else will be (a NAK or a response).
 */
void pw_qp_drain_ack_locked(struct pw_qp_i *qp, uint32_t psn, bool more);
void pw_qp_complete_send_locked(struct pw_qp_i *qp, struct pw_wqe *w,
				enum pw_wc_status status);
void pw_qp_complete_recv_locked(struct pw_qp_i *qp, struct pw_rqe *r,
				enum pw_wc_status status, uint32_t byte_len,
				const struct pw_hdr *h);
/* Validate local SGEs against the QP's PD. Return PW_WC_SUCCESS or the error. */
enum pw_wc_status pw_qp_check_sges(struct pw_qp_i *qp, const struct pw_sge *sge,
				   int n, bool write, uint64_t *total);
enum pw_wc_status pw_syndrome_to_status(uint32_t syndrome);
/* A socket error as a cause: ETIMEDOUT is TCP's own bound, the rest a reset. */
enum pw_qp_cause pw_qp_cause_of_errno(int err);

/*
 * Make @h the message tx sends next, from its first byte. Its payload
 * (ndata, data_left) and trailer (trailer_len, syndrome) are the caller's
 * to set; every other transmit field starts afresh here.
 */
static inline void pw_tx_start_locked(struct pw_qp_i *qp, enum pw_tx_kind kind,
				      const struct pw_hdr *h)
{
	struct pw_tx *tx = &qp->tx;

	pw_wire_encode_hdr(h, tx->hdr);
	tx->kind = kind;
	tx->hdr_off = 0;
	tx->didx = 0;
	tx->doff = 0;
	tx->zero_fill = false;
	tx->trailer_off = 0;
	tx->wqe = NULL;
}

/* tx.c */
void pw_tx_flush_locked(struct pw_qp_i *qp);
/* The stream can carry nothing more (cut mid-message, or dead): shut it. */
void pw_tx_kill_locked(struct pw_qp_i *qp);
void pw_qp_set_stall_locked(struct pw_qp_i *qp, bool on);
bool pw_qp_fault_check_locked(struct pw_qp_i *qp);
bool pw_qp_place_wait(struct pw_qp_i *qp);
bool pw_qp_range_miss(struct pw_qp_i *qp, uint32_t key, uint64_t a,
		      uint64_t l, bool write, bool residency,
		      struct pw_fault *f);

/* requester.c */
bool pw_req_next_locked(struct pw_qp_i *qp);

/* rx.c */
void pw_rx_process(struct pw_qp_i *qp);
/* Place the message's data into these local SGEs (a receive, a READ sink). */
void pw_rx_set_sges(struct pw_rx *rx, const struct pw_sge *sge, int n);
int pw_rx_init(struct pw_rx *rx);
void pw_rx_fini(struct pw_rx *rx);

/* responder.c: called by rx.c */
void pw_resp_begin(struct pw_qp_i *qp);
void pw_resp_finish(struct pw_qp_i *qp);
bool pw_resp_next_locked(struct pw_qp_i *qp);

/* completer.c: called by rx.c */
void pw_comp_begin(struct pw_qp_i *qp);
void pw_comp_finish(struct pw_qp_i *qp);

/* Fail the QP from outside qp->lock, then push out what tx still owes. */
void pw_qp_fatal(struct pw_qp_i *qp, enum pw_qp_cause cause,
		 enum pw_wc_status status);
/*
 * Queue a NAK that ends the connection, then fail the QP: the NAK goes out
 * after the message being transmitted, then the write side is shut.
 */
void pw_qp_fatal_nak_locked(struct pw_qp_i *qp, uint32_t psn, uint32_t syn,
			    enum pw_qp_cause cause, enum pw_wc_status head_status);
/*
 * The peer's request @psn failed our checks (access, operation, length):
 * NAK it and fail the QP (IBA: the responder's QP goes to error), our own
 * sent WRITEs and SENDs still taking the ACKs the peer owes them.
 */
void pw_qp_refuse_locked(struct pw_qp_i *qp, uint32_t psn, uint32_t syn);
/* rx.c: the peer broke the protocol; error the QP and discard until EOF. */
void pw_rx_protocol_error(struct pw_qp_i *qp);
/* responder.c */
bool pw_resp_push_locked(struct pw_qp_i *qp, const struct pw_resp *r);

/*
 * cm.c, for the fuzz harnesses only: a live QP over a connected,
 * non-blocking stream socket @fd, as if the handshake had happened with a
 * peer offering @peer_features and starting at @peer_psn. The QP owns @fd.
 */
struct pw_qp *pw_qp_attach_fd(struct pw_pd *pd, struct pw_qp_init_attr *attr,
			      int fd, uint32_t my_psn, uint32_t peer_psn,
			      uint32_t peer_features);
/*
 * cm.c, for the fuzz harnesses only: the server side of the handshake
 * (pw_accept's, for one connection) on @fd. Return the live QP, which
 * owns @fd, or NULL with errno set (the caller keeps @fd).
 */
struct pw_qp *pw_cm_accept_fd(struct pw_pd *pd, struct pw_qp_init_attr *attr,
			      int fd, int timeout_ms);

#endif /* PW_ENGINE_QP_H */
