/* SPDX-License-Identifier: MIT */
/*
 * Transmit side of a QP's socket. One message at a time is in flight on the
 * byte stream (framing); between messages responses go first, then the
 * coalesced ACK, then new requests. Payload goes straight from registered
 * memory into the socket (sendmsg over the SGEs, no staging copy).
 *
 * A source that faults mid-message cannot be taken back: the header already
 * left. A READ_RESP sends the rest of its data as zeros and reports the
 * fault in its trailer; a request's stream is cut inside the message, so
 * the responder never completes it with made-up bytes, and its WQE fails
 * with a local protection error.
 */
#include <errno.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "core/context.h"
#include "engine/qp.h"
#include "mr/mr.h"

#define ZERO_LEN (64 * 1024)
static const uint8_t zeros[ZERO_LEN];

/*
 * The socket's epoll interest: input unless a fault stalls the QP (a
 * level-triggered EPOLLIN we will not read would spin the engine), output
 * while a message waits for send space.
 */
static void epoll_update_locked(struct pw_qp_i *qp, bool out)
{
	struct epoll_event ev = {
		.events = (qp->rx_stalled ? 0 : EPOLLIN | EPOLLRDHUP) |
			  (out ? EPOLLOUT : 0),
		.data.ptr = &qp->src,
	};

	/* ENOENT after EOF removed the fd: the peer is gone, nothing to wait for */
	epoll_ctl(qp->ctx->engine.epfd, EPOLL_CTL_MOD, qp->fd, &ev);
}

static void set_out_locked(struct pw_qp_i *qp, bool on)
{
	if (atomic_load_explicit(&qp->want_out, memory_order_relaxed) == on)
		return;
	epoll_update_locked(qp, on);
	atomic_store_explicit(&qp->want_out, on, memory_order_relaxed);
}

void pw_qp_set_stall_locked(struct pw_qp_i *qp, bool on)
{
	if (qp->rx_stalled == on)
		return;
	qp->rx_stalled = on;
	epoll_update_locked(qp, atomic_load_explicit(&qp->want_out,
						     memory_order_relaxed));
}

/* Choose the next message. Return false when there is nothing to send. */
static bool pick_locked(struct pw_qp_i *qp)
{
	/* in error: what the peer is owed, then DISCONNECT, then EOF */
	if (pw_qp_get_state(qp) == PW_QPS_ERR)
		return ((qp->fatal_nak || qp->ack_pending) && pw_resp_next_locked(qp)) ||
		       pw_live_disc_next_locked(qp);
	if (pw_resp_next_locked(qp))
		return true;
	/* PONG, PING, HEARTBEAT: tiny, and the peer's bound depends on them */
	if (pw_live_next_locked(qp))
		return true;
	/* notifications go before new requests: a FAULT_IN holds them anyway */
	if (pw_notify_next_locked(qp))
		return true;
	return pw_req_next_locked(qp);
}

/*
 * A request's source faulted (or its MR went) while it was being sent.
 * The WQE fails with a local protection error and the QP with it; the
 * WRITEs and SENDs before it that the peer executed still get their ACK
 * (pw_qp_fail_drain_locked). Once its header has left, the message must
 * not complete at the responder with made-up bytes, so the stream is cut
 * mid-message (the peer sees EOF inside it and discards it); before that,
 * the stream is whole and carries what we owe the peer, then EOF.
 */
static void abort_request_locked(struct pw_qp_i *qp)
{
	struct pw_wqe *w = qp->tx.wqe;
	bool cut = qp->tx.hdr_off > 0;

	w->status = PW_WC_LOC_PROT_ERR;
	pw_qp_fail_drain_locked(qp, PW_QP_CAUSE_LOCAL_WR, w, PW_WC_LOC_PROT_ERR);
	if (cut)
		pw_tx_kill_locked(qp);
	else
		qp->tx.kind = TX_NONE;
}

/*
 * iovecs for the rest of the current message. Payload pieces are checked
 * against their MR (one use each, held across the send call in @uses). A
 * READ_RESP whose source vanished goes on as zeros with an error trailer.
 * Return the count, or -1 when a request had to be aborted.
 */
static int build_iov(struct pw_qp_i *qp, struct iovec *iov,
		     struct pw_mr_i **uses, int *nuses)
{
	struct pw_tx *tx = &qp->tx;
	bool all_data = true;
	int n = 0;

	*nuses = 0;
	if (tx->hdr_off < PW_WIRE_HDR_LEN) {
		iov[n].iov_base = tx->hdr + tx->hdr_off;
		iov[n++].iov_len = PW_WIRE_HDR_LEN - tx->hdr_off;
	}
	if (tx->data_left && !tx->zero_fill) {
		int k = pw_kiov_get(&qp->ctx->keys, tx->data, tx->ndata, tx->didx,
				    tx->doff, tx->data_left, iov + n, uses, nuses);

		if (k >= 0) {
			n += k;
		} else if (tx->kind == TX_REQ) {
			abort_request_locked(qp);
			return -1;
		} else {
			tx->zero_fill = true;
			tx->syndrome = PW_SYN_REMOTE_ACCESS;
		}
	}
	if (tx->data_left && tx->zero_fill) {
		iov[n].iov_base = (void *)zeros;
		iov[n++].iov_len = PW_MIN(tx->data_left, (uint64_t)ZERO_LEN);
		all_data = tx->data_left <= ZERO_LEN;
	}
	if (all_data && tx->trailer_len) {
		if (tx->trailer_off == 0)
			pw_wire_encode_trailer(tx->syndrome, tx->trailer);
		iov[n].iov_base = tx->trailer + tx->trailer_off;
		iov[n++].iov_len = tx->trailer_len - tx->trailer_off;
	}
	return n;
}

static void advance(struct pw_tx *tx, size_t n)
{
	size_t k;

	k = PW_MIN(n, (size_t)(PW_WIRE_HDR_LEN - tx->hdr_off));
	tx->hdr_off += (uint32_t)k;
	n -= k;
	k = PW_MIN(n, tx->data_left);
	tx->data_left -= k;
	n -= k;
	while (!tx->zero_fill && k && tx->didx < tx->ndata) {
		size_t t = PW_MIN(k, tx->data[tx->didx].len - tx->doff);

		tx->doff += t;
		k -= t;
		if (tx->doff == tx->data[tx->didx].len) {
			tx->didx++;
			tx->doff = 0;
		}
	}
	tx->trailer_off += (uint32_t)n;
}

static bool msg_done(const struct pw_tx *tx)
{
	return tx->hdr_off == PW_WIRE_HDR_LEN && !tx->data_left &&
	       tx->trailer_off == tx->trailer_len;
}

/* Return 1 when the message is out, 0 when the socket is full, -1 on error. */
static int send_current(struct pw_qp_i *qp)
{
	struct pw_tx *tx = &qp->tx;

	while (!msg_done(tx)) {
		struct iovec iov[PW_MAX_SGE + 2];
		struct pw_mr_i *uses[PW_MAX_SGE];
		struct msghdr mh = { .msg_iov = iov };
		int cnt, nuses;
		ssize_t r;

		cnt = build_iov(qp, iov, uses, &nuses);
		if (cnt < 0)
			return -1;
		mh.msg_iovlen = (size_t)cnt;
		r = pw_sendmsg(qp->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
		pw_kiov_put(uses, nuses);
		if (r >= 0) {
			advance(tx, (size_t)r);
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN)
			return 0;
		if (errno == EFAULT && tx->data_left && !tx->zero_fill) {
			/* our header/trailer never fault: the payload source did */
			if (tx->kind == TX_REQ) {
				abort_request_locked(qp);
				return -1;
			}
			tx->zero_fill = true;
			tx->syndrome = PW_SYN_REMOTE_ACCESS;
			continue;
		}
		/* EPIPE, ECONNRESET, ...: the peer is gone (IBA: retry exceeded) */
		pw_qp_fail_locked(qp, pw_qp_cause_of_errno(errno), PW_WC_RETRY_EXC_ERR);
		pw_tx_kill_locked(qp);
		return -1;
	}
	return 1;
}

static void sent_locked(struct pw_qp_i *qp)
{
	struct pw_tx *tx = &qp->tx;

	if (tx->kind == TX_RESP) {
		if (tx->resp_is_rd && qp->rd_in)
			qp->rd_in--;
		/* IBA: a responder access error puts the responder QP in error */
		if (tx->trailer_len && tx->syndrome != PW_SYN_OK)
			pw_qp_fail_drain_locked(qp, PW_QP_CAUSE_RESPONDER, NULL,
						PW_WC_WR_FLUSH_ERR);
	}
	tx->kind = TX_NONE;
}

void pw_tx_kill_locked(struct pw_qp_i *qp)
{
	qp->tx.kind = TX_NONE;
	qp->resp_count = 0;
	qp->ack_pending = false;
	qp->fatal_nak = false;
	if (!pw_cm_live(&qp->cm))
		return;
	if (!qp->shut_wr)
		shutdown(qp->fd, SHUT_WR);
	qp->shut_wr = true;
	set_out_locked(qp, false);
	pw_cm_qp_closing_locked(qp);
}

void pw_tx_flush_locked(struct pw_qp_i *qp)
{
	struct pw_tx *tx = &qp->tx;

	/* nothing goes out before the handshake is over (cm.c sends its own) */
	if (qp->shut_wr || !pw_cm_live(&qp->cm))
		return;
	for (;;) {
		int r;

		if (tx->kind == TX_NONE && !pick_locked(qp))
			break;
		r = send_current(qp);
		if (r == 0) {
			set_out_locked(qp, true);
			return;
		}
		if (r < 0 && qp->shut_wr)
			return;	/* the stream is dead or cut */
		if (r < 0)
			continue; /* a request dropped before its first byte */
		sent_locked(qp);
	}
	set_out_locked(qp, false);
	/* in error, once the last owed message is out, tell the peer: EOF */
	if (pw_qp_get_state(qp) == PW_QPS_ERR && tx->kind == TX_NONE &&
	    !qp->resp_count && !qp->ack_pending && !pw_live_disc_owed_locked(qp)) {
		qp->fatal_nak = false;
		shutdown(qp->fd, SHUT_WR);
		qp->shut_wr = true;
		pw_cm_qp_closing_locked(qp);
	}
}
