/* SPDX-License-Identifier: MIT */
/*
 * Transport liveness (live.h): PING / HEARTBEAT / DISCONNECT, the
 * requester's silence bound, and the engine's own stop detector.
 *
 * Everything here runs on the engine's token holder or under qp->lock;
 * the two stamps written on the data path (the send queue filling, bytes
 * arriving) use the coarse clock, a vDSO memory read.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "core/context.h"
#include "engine/engine.h"
#include "engine/qp.h"

/*
 * The engine fails a QP for a stop of more than its bound minus one beat:
 * its requester gives up after the bound of silence, and the peer's last
 * sign of us can be up to one beat older than our stop (we beat every
 * quarter bound while we owe it anything).
 */
static uint64_t stop_ns(const struct pw_qp_i *qp)
{
	return qp->lv.bound_ns - qp->lv.beat_ns;
}

void pw_live_init(struct pw_qp_i *qp)
{
	struct pw_live *lv = &qp->lv;
	uint64_t now = pw_coarse_ns();

	lv->on = qp->features & PW_WIRE_FEAT_LINK;
	lv->bound_ns = (uint64_t)qp->peer_timeout_ms * 1000000ull;
	lv->beat_ns = lv->bound_ns / 4;
	lv->wait_ns = now;
	lv->heard_ns = now;
	lv->ping_ns = 0;
	lv->beat_at_ns = 0;
	lv->owe = 0;
	lv->due_ns = 0;
}

static void start_hb_locked(struct pw_qp_i *qp, uint8_t op, uint32_t kind,
			    uint32_t psn)
{
	struct pw_hdr h = { .opcode = op, .psn = psn, .hb = kind };
	struct pw_tx *tx = &qp->tx;

	if (op == PW_OP_HEARTBEAT)
		atomic_fetch_add_explicit(&qp->ctx->hb_sent, 1, memory_order_relaxed);
	pw_tx_start_locked(qp, TX_CTL, &h);
	tx->ndata = 0;
	tx->data_left = 0;
	tx->trailer_len = 0;
}

bool pw_live_next_locked(struct pw_qp_i *qp)
{
	struct pw_live *lv = &qp->lv;

	if (!(lv->owe & (PW_LV_OWE_PONG | PW_LV_OWE_PING | PW_LV_OWE_BEAT)))
		return false;
	if (lv->owe & PW_LV_OWE_PONG) {
		lv->owe &= (uint8_t)~PW_LV_OWE_PONG;
		start_hb_locked(qp, PW_OP_HEARTBEAT, PW_WIRE_HB_PONG, lv->pong_psn);
	} else if (lv->owe & PW_LV_OWE_PING) {
		lv->owe &= (uint8_t)~PW_LV_OWE_PING;
		start_hb_locked(qp, PW_OP_HEARTBEAT, PW_WIRE_HB_PING, ++lv->ping_seq);
	} else {
		lv->owe &= (uint8_t)~PW_LV_OWE_BEAT;
		start_hb_locked(qp, PW_OP_HEARTBEAT, 0, 0);
	}
	return true;
}

bool pw_live_disc_next_locked(struct pw_qp_i *qp)
{
	if (!(qp->lv.owe & PW_LV_OWE_DISC))
		return false;
	qp->lv.owe &= (uint8_t)~PW_LV_OWE_DISC;
	start_hb_locked(qp, PW_OP_DISCONNECT, 0, 0);
	return true;
}

bool pw_live_disc_owed_locked(const struct pw_qp_i *qp)
{
	return qp->lv.owe & PW_LV_OWE_DISC;
}

void pw_live_disconnect_locked(struct pw_qp_i *qp)
{
	if (!qp->lv.on || qp->lv.disc_sent || qp->shut_wr)
		return;
	qp->lv.disc_sent = true;
	qp->lv.owe |= PW_LV_OWE_DISC;
}

void pw_live_rx(struct pw_qp_i *qp, const struct pw_hdr *h)
{
	if (h->opcode == PW_OP_HEARTBEAT)
		atomic_fetch_add_explicit(&qp->ctx->hb_received, 1, memory_order_relaxed);
	pthread_mutex_lock(&qp->lock);
	if (h->opcode == PW_OP_DISCONNECT) {
		/*
		 * The peer's application ended the connection: nothing it
		 * had not answered will be answered (the oldest WR fails
		 * with RETRY_EXC_ERR, as at a close), and this is said as a
		 * disconnect, not as a failure.
		 */
		pw_qp_fail_locked(qp, PW_QP_CAUSE_PEER_DISCONNECTED,
				  PW_WC_RETRY_EXC_ERR);
	} else if (h->hb == PW_WIRE_HB_PING && pw_qp_get_state(qp) != PW_QPS_ERR) {
		/* the tx flush at the end of this receive batch answers it */
		qp->lv.pong_psn = h->psn;
		qp->lv.owe |= PW_LV_OWE_PONG;
	}
	pthread_mutex_unlock(&qp->lock);
}

/*
 * The QP fails for a reason of the link (silence, our own stop): the rest
 * of its input is discarded unread, so nothing the peer sent before it
 * gave up lands now, and the peer is told with EOF.
 */
static void live_fail_locked(struct pw_qp_i *qp, enum pw_qp_cause cause)
{
	pw_qp_fail_locked(qp, cause, PW_WC_RETRY_EXC_ERR);
	qp->rx.dead = true;
	qp->rx.dst = DST_DISCARD;
	pw_tx_kill_locked(qp);
}

bool pw_live_request_ok(struct pw_qp_i *qp, uint64_t off)
{
	if (off >= qp->rx.stale_end) {
		qp->rx.stale_end = 0;
		return true;
	}
	pthread_mutex_lock(&qp->lock);
	live_fail_locked(qp, PW_QP_CAUSE_STOPPED);
	pthread_mutex_unlock(&qp->lock);
	return false;
}

/* Is the QP working on a request of the peer that it has not answered? */
static bool owes_peer_locked(const struct pw_qp_i *qp)
{
	const struct pw_rx *rx = &qp->rx;

	if (qp->rx_stalled || qp->fault_busy || qp->resp_count)
		return true;
	if (rx->state != RX_HDR && !rx->dead &&
	    pw_wire_ops[rx->hdr.opcode].cls == PW_WC_CLASS_REQUEST)
		return true;
	for (int i = 0; i < PW_NT_BATCH; i++)
		if (qp->nt_fault[i].busy)
			return true;
	return false;
}

/*
 * Time from @then to @now, or 0 if @then is later: the stamps are taken
 * with the coarse clock, some by the posting thread, and a stamp taken
 * after @now was read must not look like an age of 2^64 ns.
 */
static uint64_t since_ns(uint64_t now, uint64_t then)
{
	return now > then ? now - then : 0;
}

/*
 * One QP's liveness, now (precise clock): answer for ourselves while we
 * owe the peer, PING it while we wait for it, fail it after the bound of
 * silence. Sets lv.due_ns to the next time something falls due.
 */
static void tick_locked(struct pw_qp_i *qp, uint64_t now)
{
	struct pw_live *lv = &qp->lv;
	uint64_t due = UINT64_MAX;
	bool waiting = qp->sq_head != qp->sq_tail || qp->drain;
	uint8_t owe0 = lv->owe;

	if (pw_qp_get_state(qp) == PW_QPS_ERR && !qp->drain) {
		lv->due_ns = 0;
		return;
	}
	/* stalled, we read nothing: the peer's silence is not its fault */
	if (qp->rx_stalled)
		lv->heard_ns = now;
	if (owes_peer_locked(qp)) {
		if (since_ns(now, lv->beat_at_ns) >= lv->beat_ns) {
			lv->owe |= PW_LV_OWE_BEAT;
			lv->beat_at_ns = now;
		}
		due = lv->beat_at_ns + lv->beat_ns;
	}
	if (waiting) {
		uint64_t since = PW_MAX(lv->wait_ns, lv->heard_ns);

		if (since_ns(now, since) >= lv->bound_ns) {
			/* IBA: transport retries exceeded */
			atomic_fetch_add_explicit(&qp->ctx->peer_timeouts, 1,
						  memory_order_relaxed);
			if (qp->drain)
				pw_qp_drain_end_locked(qp);
			else
				live_fail_locked(qp, PW_QP_CAUSE_PEER_TIMEOUT);
			lv->due_ns = 0;
			return;
		}
		if (since_ns(now, since) >= lv->beat_ns &&
		    since_ns(now, lv->ping_ns) >= lv->beat_ns) {
			lv->owe |= PW_LV_OWE_PING;
			lv->ping_ns = now;
		}
		due = PW_MIN(due, since + lv->bound_ns);
		due = PW_MIN(due, PW_MAX(since, lv->ping_ns) + lv->beat_ns);
	}
	if (!waiting) {
		/*
		 * Nothing of ours outstanding, but TCP has data the peer's
		 * kernel has not ACKed (our ACKs, say, on a link cut or to a
		 * host gone): keepalive does not probe then, and the user
		 * timeout is off (cm.c), so the engine watches the kernel's
		 * last ACK itself. A stalled peer's kernel answers our
		 * zero-window probes, which keeps it fresh.
		 */
		struct tcp_info ti;
		socklen_t tl = sizeof(ti);

		if (getsockopt(qp->fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0 &&
		    ti.tcpi_unacked) {
			uint64_t quiet = (uint64_t)ti.tcpi_last_ack_recv * 1000000ull;

			if (quiet >= lv->bound_ns) {
				atomic_fetch_add_explicit(&qp->ctx->peer_timeouts, 1,
							  memory_order_relaxed);
				live_fail_locked(qp, PW_QP_CAUSE_PEER_TIMEOUT);
				lv->due_ns = 0;
				return;
			}
			due = PW_MIN(due, now + lv->bound_ns - quiet);
		}
	}
	/*
	 * Never further than a beat: the QP may start waiting meanwhile (a
	 * post), and its first PING is due a beat after that.
	 */
	lv->due_ns = due == UINT64_MAX ? 0 : PW_MIN(due, now + lv->beat_ns);
	if (lv->owe != owe0)
		pw_tx_flush_locked(qp);
}

/*
 * The clock is read under the lock: a post that held it meanwhile stamped
 * wait_ns, and a time read before that would make the wait look older.
 */
static void tick(struct pw_qp_i *qp)
{
	pthread_mutex_lock(&qp->lock);
	tick_locked(qp, pw_now_ns());
	pthread_mutex_unlock(&qp->lock);
}

uint64_t pw_live_first_ns(struct pw_engine *eng)
{
	uint64_t first;

	if (!eng->lv_nqps)
		return UINT64_MAX;
	first = eng->lv_scan_ns;
	for (struct pw_qp_i *qp = eng->qps; qp; qp = qp->eng_next)
		if (qp->lv.due_ns && qp->lv.due_ns < first)
			first = qp->lv.due_ns;
	return first;
}

void pw_live_timers(struct pw_engine *eng)
{
	uint64_t now, coarse;
	bool scan;

	if (!eng->lv_nqps)
		return;
	coarse = pw_coarse_ns();
	scan = coarse >= eng->lv_scan_ns;
	now = 0;
	for (struct pw_qp_i *qp = eng->qps; qp; qp = qp->eng_next) {
		if (!qp->lv.on)
			continue;
		/* the coarse clock lags by up to a tick: check due ones exactly */
		if (!(scan && !qp->lv.due_ns) &&
		    !(qp->lv.due_ns && qp->lv.due_ns <= coarse + PW_COARSE_TICK_NS))
			continue;
		if (!now)
			now = pw_now_ns();
		if (qp->lv.due_ns && qp->lv.due_ns > now && !scan)
			continue;
		/*
		 * A stop of this process in the middle of a batch, before its
		 * timers, shows here: the stopped() verdict and its fresh
		 * start for the peer's silence come before the silence test.
		 */
		pw_live_wake(eng);
		tick(qp);
	}
	if (scan)
		eng->lv_scan_ns = coarse + eng->lv_cap_ns;
}

/*
 * The engine did not run for @gap ns (SIGSTOP, a debugger, starvation).
 * Every QP whose bound that exceeds (minus a beat) may have a peer that
 * has given up on it: one that owes the peer an answer fails now; one with
 * input waiting fails if a request is among what arrived meanwhile.
 */
static void stopped(struct pw_engine *eng, uint64_t gap)
{
	atomic_fetch_add_explicit(&container_of(eng, struct pw_context, engine)->stops,
				  1, memory_order_relaxed);
	for (struct pw_qp_i *qp = eng->qps; qp; qp = qp->eng_next) {
		int pending = 0;

		if (!qp->lv.on || gap < stop_ns(qp))
			continue;
		pthread_mutex_lock(&qp->lock);
		if (pw_qp_get_state(qp) == PW_QPS_ERR) {
			pthread_mutex_unlock(&qp->lock);
			continue;
		}
		if (owes_peer_locked(qp)) {
			live_fail_locked(qp, PW_QP_CAUSE_STOPPED);
		} else if (ioctl(qp->fd, FIONREAD, &pending) != 0) {
			/* unknown (a broken socket): no request of it runs */
			qp->rx.stale_end = UINT64_MAX;
		} else if (pending > 0 || qp->rx.tail != qp->rx.head) {
			/* the stream up to here arrived while we were stopped */
			qp->rx.stale_end = qp->rx.sock_read + (uint64_t)pending;
		}
		/* and a fresh start for the peer's silence */
		qp->lv.heard_ns = pw_coarse_ns();
		pthread_mutex_unlock(&qp->lock);
	}
}

void pw_live_wake(struct pw_engine *eng)
{
	uint64_t now = pw_coarse_ns();
	uint64_t gap = since_ns(now, eng->lv_mark_ns);

	eng->lv_mark_ns = now;
	if (eng->lv_nqps && gap > 3 * eng->lv_cap_ns)
		stopped(eng, gap);
}

static void recompute_cap(struct pw_engine *eng)
{
	uint64_t cap = UINT64_MAX;

	for (struct pw_qp_i *qp = eng->qps; qp; qp = qp->eng_next)
		if (qp->lv.on && qp->lv.beat_ns < cap)
			cap = qp->lv.beat_ns;
	eng->lv_cap_ns = cap;
}

void pw_live_added(struct pw_engine *eng, struct pw_qp_i *qp)
{
	if (!qp->lv.on)
		return;
	if (!eng->lv_nqps++) {
		eng->lv_mark_ns = pw_coarse_ns();
		eng->lv_scan_ns = eng->lv_mark_ns;
	}
	if (qp->lv.beat_ns < eng->lv_cap_ns || eng->lv_nqps == 1)
		eng->lv_cap_ns = qp->lv.beat_ns;
	/* looked at in this batch's timers: its first deadlines are set */
	eng->lv_scan_ns = PW_MIN(eng->lv_scan_ns, pw_coarse_ns());
}

void pw_live_removed(struct pw_engine *eng, struct pw_qp_i *qp)
{
	if (!qp->lv.on)
		return;
	eng->lv_nqps--;
	recompute_cap(eng);
}
