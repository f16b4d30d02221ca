/* SPDX-License-Identifier: MIT */
/*
 * Transport liveness: the engine, not the kernel, proves that the peer's
 * engine is alive (docs/limits.md, "The dead-peer bound").
 *
 * A stopped process (SIGSTOP, a debugger, a stuck engine) still has a
 * kernel that ACKs TCP and answers keepalives, so neither TCP_USER_TIMEOUT
 * nor keepalive ever fires while its peer waits for a READ response or an
 * ACK. IBA's answer is the requester's transport timer (local ACK timeout
 * x retry_cnt): every outstanding WR completes or fails within a bound.
 * pagewire's, between peers that both set PW_WIRE_FEAT_LINK:
 *
 * - evidence: any byte that arrives from the peer. A requester with WRs
 *   outstanding that has heard nothing for a quarter of the bound B sends
 *   a PING (HEARTBEAT, PW_WIRE_HB_PING), which any running engine answers
 *   between two messages; after B of silence the QP fails (RETRY_EXC_ERR
 *   on the oldest WR, the rest flushed: IBA's retry exceeded).
 * - slow is not dead: an engine that is working on the peer's requests
 *   but cannot answer PINGs in time (its QP stalled in a fault: it reads
 *   nothing; or in the middle of a long message: the PING waits behind it)
 *   sends an unasked HEARTBEAT every quarter of B. A fault may take any
 *   time; the peer waits for it, as for a hardware ODP fault with
 *   rnr_retry 7.
 * - stopped: a requester gives up on a peer that was stopped for B, and
 *   that peer, once running again, must not then execute what waited in
 *   its socket (a WRITE landing after its requester was told it failed).
 *   The engine notices its own stop (the engine never sleeps longer than
 *   a quarter of the smallest bound, so a gap of three quarters of one is
 *   a stop) and fails the QPs whose peer may have given up: those that owe
 *   the peer an answer, and those whose next request arrived during the
 *   stop (PW_QP_CAUSE_STOPPED).
 */
#ifndef PW_ENGINE_LIVE_H
#define PW_ENGINE_LIVE_H

#include <stdbool.h>
#include <stdint.h>

struct pw_engine;
struct pw_qp_i;
struct pw_hdr;

/* Messages the QP's tx owes the peer (struct pw_live.owe). */
enum {
	PW_LV_OWE_PONG	= 1 << 0,
	PW_LV_OWE_PING	= 1 << 1,
	PW_LV_OWE_BEAT	= 1 << 2,
	PW_LV_OWE_DISC	= 1 << 3,
};

/*
 * Per QP. Stamps marked (coarse) come from pw_coarse_ns(): never ahead of
 * the real time, so a bound measured from them is at most a tick early.
 */
struct pw_live {
	bool on;		/* both sides set PW_WIRE_FEAT_LINK (fixed once live) */
	uint64_t bound_ns;	/* B: the QP's peer_timeout_ms */
	uint64_t beat_ns;	/* B / 4: PING and HEARTBEAT interval */
	/* under qp->lock */
	uint64_t wait_ns;	/* the send queue last became non-empty (coarse) */
	uint64_t ping_ns;	/* our last PING */
	uint64_t beat_at_ns;	/* our last unasked HEARTBEAT */
	uint32_t ping_seq;
	uint32_t pong_psn;	/* the PING a PONG answers */
	uint8_t owe;		/* PW_LV_OWE_* */
	bool disc_sent;		/* DISCONNECT queued or sent: once */
	/* token holder only */
	uint64_t heard_ns;	/* bytes last arrived from the peer (coarse) */
	uint64_t due_ns;	/* next tick; 0: at the engine's next scan */
};

/* cm.c, as the QP goes live (features negotiated, before the engine has it) */
void pw_live_init(struct pw_qp_i *qp);

/* tx.c: a link message as the next message to send, if one is owed */
bool pw_live_next_locked(struct pw_qp_i *qp);
/* tx.c, in the error state: DISCONNECT, if owed (the last message) */
bool pw_live_disc_next_locked(struct pw_qp_i *qp);
/* Does tx still owe the peer a DISCONNECT? */
bool pw_live_disc_owed_locked(const struct pw_qp_i *qp);
/* qp.c: queue DISCONNECT (pw_disconnect, pw_destroy_qp), once */
void pw_live_disconnect_locked(struct pw_qp_i *qp);

/* rx.c (token holder): a HEARTBEAT or DISCONNECT arrived */
void pw_live_rx(struct pw_qp_i *qp, const struct pw_hdr *h);
/*
 * rx.c (token holder): a request starts at stream offset @off. False when
 * it arrived while this process was stopped and the QP was failed for it.
 */
bool pw_live_request_ok(struct pw_qp_i *qp, uint64_t off);

/*
 * engine.c (token holder). pw_live_cap_ns: the longest the engine may
 * sleep (a quarter of the smallest bound; UINT64_MAX without liveness
 * QPs). pw_live_first_ns: the earliest liveness deadline, coarse clock
 * (UINT64_MAX: none). pw_live_timers: run what is due. pw_live_wake:
 * after every wait and before every QP's events: notices a stop.
 */
uint64_t pw_live_first_ns(struct pw_engine *eng);
void pw_live_timers(struct pw_engine *eng);
void pw_live_wake(struct pw_engine *eng);
/* engine.c: a QP joins or leaves the engine */
void pw_live_added(struct pw_engine *eng, struct pw_qp_i *qp);
void pw_live_removed(struct pw_engine *eng, struct pw_qp_i *qp);

#endif /* PW_ENGINE_LIVE_H */
