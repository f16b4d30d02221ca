/* SPDX-License-Identifier: MIT */
/*
 * Receive side of a QP's socket: framing. Headers (and small payloads that
 * arrive with them) are read into a staging buffer; the rest of a payload
 * is received straight into its destination with recvmsg(), whose second
 * iovec is the staging buffer so that the next headers come in with the
 * same call. Payload bytes that landed in staging are placed with an
 * EFAULT-safe copy. An unmapped destination (EFAULT) or a deregistered MR
 * turns the rest of the message into a discard and an error at its end,
 * never into a crash or a late write.
 *
 * Runs on the progress thread only; rx state needs no lock.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/context.h"
#include "engine/qp.h"
#include "mr/mr.h"
#include "paging/pt.h"

int pw_rx_init(struct pw_rx *rx)
{
	memset(rx, 0, sizeof(*rx));
	rx->buf = malloc(PW_RX_STAGING);
	return rx->buf ? 0 : -ENOMEM;
}

void pw_rx_fini(struct pw_rx *rx)
{
	free(rx->buf);
	rx->buf = NULL;
}

void pw_rx_set_sges(struct pw_rx *rx, const struct pw_sge *sge, int n)
{
	rx->dst = DST_PLACE;
	rx->niov = 0;
	for (int i = 0; i < n; i++) {
		if (!sge[i].length)
			continue;
		rx->iov[rx->niov].base = (void *)(uintptr_t)sge[i].addr;
		rx->iov[rx->niov].len = sge[i].length;
		rx->iov[rx->niov++].key = sge[i].lkey;
	}
	rx->iov_idx = 0;
	rx->iov_off = 0;
}

static inline uint32_t avail(const struct pw_rx *rx)
{
	return rx->tail - rx->head;
}

/* @err: the receive's errno, 0 for an orderly EOF */
static void on_eof(struct pw_qp_i *qp, int err)
{
	/* eof under the lock: the connection manager reads it from other threads */
	pthread_mutex_lock(&qp->lock);
	qp->rx.eof = true;
	/* the peer vanished (or shut us out): IBA's transport retry exceeded */
	pw_qp_fail_locked(qp, err ? pw_qp_cause_of_errno(err) : PW_QP_CAUSE_PEER_CLOSED,
			  PW_WC_RETRY_EXC_ERR);
	pw_tx_flush_locked(qp);
	pw_cm_qp_closing_locked(qp);
	pthread_mutex_unlock(&qp->lock);
}

void pw_rx_protocol_error(struct pw_qp_i *qp)
{
	pthread_mutex_lock(&qp->lock);
	qp->rx.dead = true;
	qp->rx.dst = DST_DISCARD;
	pw_qp_fatal_nak_locked(qp, qp->exp_psn, PW_SYN_INVALID_REQ,
			       PW_QP_CAUSE_PROTOCOL, PW_WC_FATAL_ERR);
	pw_cm_qp_closing_locked(qp);
	pthread_mutex_unlock(&qp->lock);
}

/* Read more into staging. Return bytes read, 0 if none for now, -1 at EOF. */
/*
 * How much of the socket a read into staging may take. When the socket is
 * backlogged (the last read filled all it asked for) after a large
 * payload, only about a header: the next message is likely large too, and
 * whatever payload staging grabs must be copied again to its destination
 * (measured: 64 QPs of 64 KiB WRITEs spent 6% in that copy; peeking took
 * them from ~0.7x to ~1.0x the single-QP rate). When the reader keeps up,
 * the whole staging buffer: a message and the next header in one call is
 * worth more than the copy (one QP of 64 KiB WRITEs: ~4000 against ~3300
 * MB/s with peeking). Small messages always use the whole buffer.
 */
static size_t staging_room(const struct pw_rx *rx)
{
	size_t room = PW_RX_STAGING - rx->tail;

	return rx->big && rx->backlog && room > PW_RX_PEEK ? PW_RX_PEEK : room;
}

static ssize_t fill(struct pw_qp_i *qp)
{
	struct pw_rx *rx = &qp->rx;
	size_t room;
	ssize_t n;

	if (rx->head == rx->tail) {
		rx->head = rx->tail = 0;
	} else if (rx->tail == PW_RX_STAGING) {
		memmove(rx->buf, rx->buf + rx->head, avail(rx));
		rx->tail -= rx->head;
		rx->head = 0;
	}
	room = staging_room(rx);
	do {
		n = recv(qp->fd, rx->buf + rx->tail, room, MSG_DONTWAIT);
	} while (n < 0 && errno == EINTR);
	if (n > 0) {
		/* short: the socket is empty, skip the EAGAIN round trip */
		rx->drained = (size_t)n < room;
		rx->backlog = !rx->drained;
		rx->tail += (uint32_t)n;
		rx->sock_read += (uint64_t)n;
		return n;
	}
	if (n < 0 && errno == EAGAIN)
		return 0;
	on_eof(qp, n < 0 ? errno : 0);
	return -1;
}

/*
 * iovecs for the next @max bytes of payload, with a use of each MR held
 * (re-checked every step: deregistration stops placement at once). On a
 * dead or shrunk MR the rest of the message is discarded and reported.
 */
static int dst_iov(struct pw_qp_i *qp, struct iovec *iov, uint64_t max,
		   struct pw_mr_i **uses, int *nuses)
{
	struct pw_rx *rx = &qp->rx;
	uint64_t before = 0;
	int n = pw_kiov_get(&qp->ctx->keys, rx->iov, rx->niov, rx->iov_idx,
			    rx->iov_off, max, iov, uses, nuses);

	if (n < 0) {
		rx->fault = true;
		rx->dst = DST_DISCARD;
		return 0;
	}
	/*
	 * ODP: the pages must still be in the device page table, checked
	 * after the uses were taken (pw_mr_invalidate() clears, fences and
	 * then waits for uses: a step either sees its clearing or is
	 * waited for). An invalidated page ends the step there; placement
	 * faults it in again (rx.place_ok). Every placement iovec is keyed,
	 * so uses[i] is iov[i]'s MR.
	 */
	atomic_thread_fence(memory_order_seq_cst);
	for (int i = 0; i < n && i < *nuses; i++) {
		uint64_t a = (uint64_t)(uintptr_t)iov[i].iov_base, m;

		/* past the 57-bit user space: the copy's EFAULT reports it */
		if (uses[i]->pt &&
		    !pw_pt_lookup(uses[i]->pt, a, iov[i].iov_len, true, &m) &&
		    !(PW_MAX(m, a) >> PW_PT_VA_BITS)) {
			uint64_t ok = m > a ? m - a : 0;

			rx->place_ok = rx->done + before + ok;
			iov[i].iov_len = (size_t)ok;
			return ok ? i + 1 : i;
		}
		before += iov[i].iov_len;
	}
	return n;
}

static void dst_advance(struct pw_rx *rx, uint64_t n)
{
	rx->done += n;
	rx->left -= n;
	while (n && rx->iov_idx < rx->niov) {
		size_t room = rx->iov[rx->iov_idx].len - rx->iov_off;
		size_t t = PW_MIN(n, room);

		rx->iov_off += t;
		n -= t;
		if (rx->iov_off == rx->iov[rx->iov_idx].len) {
			rx->iov_idx++;
			rx->iov_off = 0;
		}
	}
}

/*
 * Payload bytes that may be consumed now: up to rx->place_ok while data
 * is placed (STALL pipelining), all of it while it is discarded.
 */
static uint64_t place_room(const struct pw_rx *rx)
{
	if (rx->dst != DST_PLACE || rx->place_ok - rx->done >= rx->left)
		return rx->left;
	return rx->place_ok > rx->done ? rx->place_ok - rx->done : 0;
}

/* Place @n payload bytes that arrived in staging. */
static void place_staged(struct pw_qp_i *qp, uint32_t n)
{
	struct pw_rx *rx = &qp->rx;
	struct iovec iov[PW_MAX_SGE];
	struct pw_mr_i *uses[PW_MAX_SGE];
	int cnt, nuses = 0;

	if (rx->dst != DST_DISCARD && pw_qp_get_state(qp) != PW_QPS_ERR) {
		uint32_t m = 0;

		cnt = dst_iov(qp, iov, n, uses, &nuses);
		for (int i = 0; i < cnt; i++)
			m += (uint32_t)iov[i].iov_len;
		if (rx->dst == DST_PLACE && m < n)
			n = m;	/* the rest after a fault (place_ok) */
		if (cnt && pw_safe_writev(iov, cnt, rx->buf + rx->head, n) != (ssize_t)n) {
			rx->fault = true;
			rx->dst = DST_DISCARD;
		}
		pw_kiov_put(uses, nuses);
	}
	rx->head += n;
	dst_advance(rx, n);
}

/*
 * Receive payload straight into its destination, and whatever follows into
 * staging. Return bytes read, 0 if none for now, -1 at EOF.
 */
static ssize_t recv_direct(struct pw_qp_i *qp)
{
	struct pw_rx *rx = &qp->rx;
	struct iovec iov[PW_MAX_SGE + 1];
	struct pw_mr_i *uses[PW_MAX_SGE];
	struct msghdr mh = { .msg_iov = iov };
	uint64_t dlen;
	int cnt, nuses = 0;
	ssize_t n;

	if (rx->dst == DST_DISCARD || pw_qp_get_state(qp) == PW_QPS_ERR) {
		rx->dst = DST_DISCARD;
		return fill(qp);
	}
	cnt = dst_iov(qp, iov, place_room(rx), uses, &nuses);
	if (!cnt && rx->dst == DST_PLACE) {
		/* the step's first page was invalidated: fault it (place_ok) */
		pw_kiov_put(uses, nuses);
		return 0;
	}
	if (!cnt)
		return fill(qp);
	rx->head = rx->tail = 0;
	iov[cnt].iov_base = rx->buf;
	iov[cnt].iov_len = staging_room(rx);
	mh.msg_iovlen = (size_t)cnt + 1;
	do {
		n = recvmsg(qp->fd, &mh, MSG_DONTWAIT);
	} while (n < 0 && errno == EINTR);
	pw_kiov_put(uses, nuses);
	if (n > 0) {
		size_t want = iov[cnt].iov_len;

		dlen = 0;
		for (int i = 0; i < cnt; i++)
			dlen += iov[i].iov_len;
		want += dlen;
		rx->drained = (size_t)n < want;
		rx->backlog = !rx->drained;
		/* what overflowed into staging is placed later, from there */
		dlen = PW_MIN((uint64_t)n, dlen);
		dst_advance(rx, dlen);
		rx->tail = (uint32_t)(n - (ssize_t)dlen);
		rx->sock_read += (uint64_t)n;
		return n;
	}
	if (n < 0 && errno == EAGAIN)
		return 0;
	if (n < 0 && errno == EFAULT) {
		/* the destination is not mapped: discard the rest, report it */
		rx->fault = true;
		rx->dst = DST_DISCARD;
		return fill(qp);
	}
	on_eof(qp, n < 0 ? errno : 0);
	return -1;
}

/*
 * Make @len bytes available in staging, reading within @budget. Return
 * false to stop for now (no data yet, EOF, or the budget is spent).
 */
static bool staged(struct pw_qp_i *qp, uint32_t len, ssize_t *budget)
{
	while (avail(&qp->rx) < len) {
		ssize_t n;

		if (*budget <= 0 || qp->rx.drained)
			return false;
		n = fill(qp);
		if (n <= 0)
			return false;
		*budget -= n;
	}
	return true;
}

static void msg_begin(struct pw_qp_i *qp)
{
	struct pw_rx *rx = &qp->rx;
	const struct pw_wire_opinfo *oi = &pw_wire_ops[rx->hdr.opcode];

	rx->done = 0;
	rx->msg_seq++;
	rx->left = rx->hdr.payload_len;
	rx->big = rx->hdr.payload_len >= PW_RX_BIG;
	rx->fault = false;
	rx->trailer_syn = PW_SYN_OK;
	rx->dst = DST_DISCARD;
	rx->place_ok = UINT64_MAX;
	if (rx->hdr.opcode == PW_OP_READ_RESP)
		rx->left -= PW_WIRE_READ_TRAILER_LEN;
	/*
	 * A request that arrived while this process was stopped may be one
	 * its requester has given up on: it must not run now (live.c).
	 */
	if (oi->cls == PW_WC_CLASS_REQUEST && rx->stale_end &&
	    !pw_live_request_ok(qp, rx->sock_read - avail(rx) - PW_WIRE_HDR_LEN))
		;	/* the QP failed; the rest is discarded */
	else if (oi->cls == PW_WC_CLASS_REQUEST)
		pw_resp_begin(qp);
	else if (oi->cls == PW_WC_CLASS_RESPONSE)
		pw_comp_begin(qp);
	else if (oi->cls == PW_WC_CLASS_LINK ? !qp->lv.on :
		 oi->cls != PW_WC_CLASS_NOTIFY || !qp->nt.peer)
		pw_rx_protocol_error(qp);	/* CM after connect, or not negotiated */
	rx->state = RX_DATA;
}

static void msg_finish(struct pw_qp_i *qp)
{
	struct pw_rx *rx = &qp->rx;

	rx->state = RX_HDR;
	if (rx->dead)
		return;
	switch (pw_wire_ops[rx->hdr.opcode].cls) {
	case PW_WC_CLASS_REQUEST:
		pw_resp_finish(qp);
		break;
	case PW_WC_CLASS_NOTIFY:
		pw_notify_rx(qp, &rx->hdr);
		break;
	case PW_WC_CLASS_LINK:
		pw_live_rx(qp, &rx->hdr);
		break;
	default:
		pw_comp_finish(qp);
		break;
	}
}

/*
 * In the middle of a large payload, ask the kernel not to wake us before
 * the rest of it (up to PW_RX_LOWAT_MAX) is there: SO_RCVLOWAT, which
 * EPOLLIN honours too. Each wakeup then places a big piece with one
 * recvmsg, and the sender's softirq pays for fewer wakeups (measured,
 * docs/performance.md). Safe because the peer is committed to sending the
 * rest of a message whose header arrived; EOF and errors wake us
 * regardless. Back to 1 for headers and small payloads.
 */
static void set_lowat(struct pw_qp_i *qp)
{
	struct pw_rx *rx = &qp->rx;
	int want = 1;

	if (rx->state == RX_DATA && !rx->dead && !rx->eof && !avail(rx) &&
	    rx->left >= PW_RX_LOWAT_MIN)
		want = (int)PW_MIN(rx->left, (uint64_t)PW_RX_LOWAT_MAX);
	if (want == (rx->lowat ? rx->lowat : 1))
		return;
	if (setsockopt(qp->fd, SOL_SOCKET, SO_RCVLOWAT, &want, sizeof(want)) == 0)
		rx->lowat = want;
}

void pw_rx_process(struct pw_qp_i *qp)
{
	struct pw_rx *rx = &qp->rx;
	ssize_t budget = PW_RX_BUDGET;
	uint32_t avail0 = avail(rx);
	enum pw_rx_state state0 = rx->state;
	bool eof0 = rx->eof;
	ssize_t n;

	/*
	 * The budget bounds socket reads per wakeup (fairness between QPs);
	 * staged bytes are always consumed, since epoll cannot see them.
	 */
	rx->drained = false;
	while (!rx->eof) {
		if (rx->dead) {
			if (budget <= 0 || rx->drained)
				break;
			/* protocol error: swallow everything until the peer closes */
			rx->head = rx->tail;
			n = fill(qp);
			if (n <= 0)
				break;
			budget -= n;
			continue;
		}
		switch (rx->state) {
		case RX_HDR:
			if (!staged(qp, PW_WIRE_HDR_LEN, &budget))
				goto out;
			if (pw_wire_decode_hdr(rx->buf + rx->head, avail(rx),
					       &rx->hdr) != 0) {
				pw_rx_protocol_error(qp);
				continue;
			}
			rx->head += PW_WIRE_HDR_LEN;
			msg_begin(qp);
			break;
		case RX_DATA:
			/* STALL: nothing is placed or read until the fault is done */
			if (qp->rx_stalled)
				goto out;
			if (!rx->left) {
				if (rx->hdr.opcode == PW_OP_READ_RESP)
					rx->state = RX_TRAILER;
				else
					msg_finish(qp);
				continue;
			}
			/* STALL pipelining: past the valid part, wait for the fault */
			if (!place_room(rx) && pw_qp_place_wait(qp))
				goto out;
			if (avail(rx)) {
				place_staged(qp, (uint32_t)PW_MIN((uint64_t)avail(rx),
								  place_room(rx)));
				continue;
			}
			if (budget <= 0 || rx->drained)
				goto out;
			n = recv_direct(qp);
			if (n == 0 && rx->dst == DST_PLACE && !place_room(rx))
				continue;	/* a page was invalidated: fault */
			if (n <= 0)
				goto out;
			budget -= n;
			break;
		case RX_TRAILER:
			if (!staged(qp, PW_WIRE_READ_TRAILER_LEN, &budget))
				goto out;
			/* only these can arise once a READ_RESP header is out */
			if (pw_wire_decode_trailer(rx->buf + rx->head, avail(rx),
						   &rx->trailer_syn) != 0 ||
			    (rx->trailer_syn != PW_SYN_OK &&
			     rx->trailer_syn != PW_SYN_REMOTE_ACCESS &&
			     rx->trailer_syn != PW_SYN_REMOTE_OP)) {
				pw_rx_protocol_error(qp);
				continue;
			}
			rx->head += PW_WIRE_READ_TRAILER_LEN;
			msg_finish(qp);
			break;
		}
	}
out:
	/*
	 * Nothing read, nothing consumed: no ACK or response can be due from
	 * this pass (timers send delayed ACKs). A busy poller's empty passes
	 * skip the lock.
	 */
	if (budget == PW_RX_BUDGET && avail(rx) == avail0 &&
	    rx->state == state0 && rx->eof == eof0)
		return;
	/* any byte is a sign of the peer's engine (live.c) */
	if (budget != PW_RX_BUDGET)
		qp->lv.heard_ns = pw_coarse_ns();
	set_lowat(qp);
	/* one flush per batch: this is where ACKs coalesce */
	pthread_mutex_lock(&qp->lock);
	pw_tx_flush_locked(qp);
	pthread_mutex_unlock(&qp->lock);
}
