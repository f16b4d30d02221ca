/* SPDX-License-Identifier: MIT */
/*
 * Completion plumbing shared by client and server loops, and the
 * end-of-run control handshake:
 *
 *   client                               server
 *   ------                               ------
 *   (all measured WRs completed)
 *   post ctrl recv, SEND DONE   ----->   ctrl recv completes
 *                                        verifies its own memory
 *                                        (--first-touch, --swapped: then
 *                                        times the platform rate)
 *   ctrl recv completes         <-----   SEND RESULT(status, detail,
 *                                             counters, platform rate)
 *
 *   wait for the server's disconnect <-- destroys its QP once RESULT has
 *   (the linger receive is flushed)      completed (was acknowledged)
 *
 * The server's verdict thus reaches the client, and both processes fail
 * when the data that landed at the server is wrong. The client destroys
 * its QP last, as an rdma_cm client waits for DISCONNECTED: the side that
 * received the last message closes last, so the run ends in a known order
 * whatever the timing.
 *
 * Before DONE, `write_bw --swapped` and `hol` may send REGION requests
 * (always one at a time, at a point where the QP has nothing else in
 * flight), each answered by a REGION_REPLY:
 *
 *   client                               server
 *   post an extra receive
 *   SEND REGION(range, what)    ----->   post an extra receive
 *                                        verify and/or page out (perf_swap.c)
 *   receive completes           <-----   SEND REGION_REPLY(status, pages)
 *
 * The first control message the server gets lands in its ordinary
 * control receive (posted after all data receives at accept); each
 * request makes it post one more (wr_id PERF_WRID_XCTRL | n), before its
 * reply, so the client's next message (a request or DONE) always finds
 * one. All of them use the second slot of the ctrl area.
 *
 * Control messages are PERF_CTRL_MSG_LEN bytes, little-endian:
 *
 *   off len field
 *     0   4 magic "PWCT" (0x54435750)
 *     4   4 type: 1 = DONE, 2 = RESULT, 3 = REGION, 4 = REGION_REPLY
 *     8   8 RESULT: 0 = verified, else a PERF_RES_* code
 *    16   8 RESULT: detail (first mismatching byte offset + 1, value...)
 *    24  96 RESULT: the server context's counters (pw_query_stats), 12
 *           u64 in the order of ctrl_stats[]; zero in DONE
 *   120  48 RESULT: the server's platform rate (struct perf_platform,
 *           perf_platform.c): kind, method, bytes, ns, out, total; all
 *           zero when not measured
 *
 *   REGION (struct perf_region_req):      REGION_REPLY (perf_region_rep):
 *     8   8 off in the rx area              8   8 status (PERF_REGION_*)
 *    16   8 len                            16   8 detail
 *    24   8 message size                   24   8 pages not resident after
 *    32   8 flags (PERF_REGION_VERIFY,                page-out (mincore)
 *           PERF_REGION_PAGEOUT)           32   8 pages paged out
 *    40   8 rot  \  verify: slot j holds
 *    48   8 mod   } pattern bytes from
 *    56   8 slots/  ((j + rot) % mod) * size
 */
#include <errno.h>
#include <string.h>

#include "perf.h"
#include "tool_util.h"

#define PERF_CTRL_MAGIC		0x54435750u	/* "PWCT" little-endian */
#define PERF_CTRL_NSTATS	12
#define PERF_CTRL_PLAT_OFF	(24 + 8 * PERF_CTRL_NSTATS)
#define PERF_CTRL_NPLAT		6
#define PERF_CTRL_MSG_LEN	(PERF_CTRL_PLAT_OFF + 8 * PERF_CTRL_NPLAT)
#define PERF_CTRL_DONE		1
#define PERF_CTRL_RESULT	2
#define PERF_CTRL_REGION	3
#define PERF_CTRL_REGION_REPLY	4
#define PERF_CTRL_MAX_FIELDS	7
/* The linger receive, posted after the control receive (never consumed). */
#define PERF_WRID_LINGER	(PERF_WRID_RECV | PERF_WRID_CTRL)
/* How long the client waits for the server to disconnect at the end. */
#define PERF_LINGER_MS		10000

/**
 * perf_next_wc() - the next completion of @ep, in order
 *
 * Completions are polled in batches into @ep->wcq and handed out one by
 * one, so a caller looking for a particular completion never loses the
 * others of the batch.
 *
 * Return: 0, -ETIMEDOUT (reported), or another negative errno (reported).
 */
int perf_next_wc(struct perf_ep *ep, struct pw_wc *out, int timeout_ms)
{
	if (!ep->wcq_len) {
		int n = cq_wait(&ep->cqw, ep->wcq, PERF_WC_BATCH, timeout_ms);

		if (n == -ETIMEDOUT) {
			perf_fail("QP %u: no completion within %d s; giving up",
				  ep->idx, timeout_ms / 1000);
			return n;
		}
		if (n < 0) {
			perf_fail("QP %u: waiting for completions failed: %s (%s)",
				  ep->idx, strerror(-n), pw_last_error());
			return n;
		}
		ep->wcq_head = 0;
		ep->wcq_len = (unsigned int)n;
	}
	*out = ep->wcq[ep->wcq_head++];
	ep->wcq_len--;
	return 0;
}

/**
 * perf_wait_any() - wait until one of several QPs has completions
 * @active:     which of @run's QPs to look at (run->qps entries)
 * @timeout_ms: give up after this long without a completion; -1 = never
 *
 * The single-thread bw loops' wait: every active QP whose queue of
 * polled completions (ep->wcq, see perf_next_wc()) is empty is polled
 * once, in index order. When none has anything, busy mode polls again;
 * blocking mode arms the CQs not armed yet, polls once more (a
 * completion may have arrived before the arm) and then sleeps on the
 * run's one channel until any of them raises an event.
 *
 * Return: the number of active QPs with completions in their wcq (> 0),
 * -ETIMEDOUT or another negative errno (reported).
 */
int perf_wait_any(struct perf_run *run, const bool *active, int timeout_ms)
{
	uint64_t deadline = timeout_ms >= 0 ?
			    tool_now_ns() + (uint64_t)timeout_ms * 1000000ull : 0;
	int r;

	for (unsigned int spins = 0;; spins++) {
		int ready = 0;
		bool armed_now = false;

		for (unsigned int i = 0; i < run->qps; i++) {
			struct perf_ep *ep = &run->eps[i];

			if (!active[i])
				continue;
			if (!ep->wcq_len) {
				r = pw_poll_cq(ep->cqw.cq, PERF_WC_BATCH, ep->wcq);
				if (r < 0) {
					perf_fail("QP %u: pw_poll_cq failed: %s (%s)",
						  i, strerror(-r), pw_last_error());
					return r;
				}
				ep->wcq_head = 0;
				ep->wcq_len = (unsigned int)r;
			}
			if (ep->wcq_len)
				ready++;
		}
		if (ready)
			return ready;
		if (deadline && (run->channel || (spins & 255) == 255) &&
		    tool_now_ns() >= deadline)
			goto timeout;
		if (!run->channel)
			continue;	/* busy poll */
		for (unsigned int i = 0; i < run->qps; i++) {
			if (!active[i])
				continue;
			r = cq_waiter_arm(&run->eps[i].cqw);
			if (r < 0) {
				perf_fail("QP %u: pw_req_notify_cq failed: %s (%s)",
					  i, strerror(-r), pw_last_error());
				return r;
			}
			if (r)
				armed_now = true;
		}
		if (armed_now)
			continue;	/* poll again before sleeping */
		uint64_t now = tool_now_ns();
		int ms = -1;

		if (deadline)
			ms = now >= deadline ? 0 :
			     (int)((deadline - now + 999999) / 1000000);
		r = cq_channel_wait(run->channel, ms);
		if (r == -ETIMEDOUT)
			goto timeout;
		if (r < 0) {
			perf_fail("waiting for completions failed: %s (%s)",
				  strerror(-r), pw_last_error());
			return r;
		}
	}
timeout:
	perf_fail("no completion on any of %u QPs within %d s; giving up",
		  run->qps, timeout_ms / 1000);
	return -ETIMEDOUT;
}

/**
 * perf_reap_send() - account a send completion of perf_post_tracked() WRs
 *
 * A QP's send WRs complete in order, so the completion of WR #k retires
 * every tracked WR up to k, signaled or not.
 *
 * Return: 0, -EIO on an error completion, -EPROTO on a stray completion
 * (both reported).
 */
int perf_reap_send(struct perf_ep *ep, const struct pw_wc *wc)
{
	uint64_t seq = wc->wr_id & ~PERF_WRID_CTRL;

	if (wc->status != PW_WC_SUCCESS) {
		perf_print_wc_error(ep, wc, wc->wr_id & PERF_WRID_CTRL ?
				    "control send" : "send");
		return -EIO;
	}
	if ((wc->wr_id & PERF_WRID_RECV) || seq >= ep->sends_posted) {
		perf_fail("QP %u: unexpected completion (wr_id 0x%llx)", ep->idx,
			  (unsigned long long)wc->wr_id);
		return -EPROTO;
	}
	if (seq + 1 > ep->sends_done)
		ep->sends_done = seq + 1;
	return 0;
}

/**
 * perf_post_tracked() - post a send WR of a latency loop or of the control
 * handshake
 * @wr:     the WR; wr_id and the SIGNALED flag are set here
 * @signal: the caller needs its completion (the last WR of a loop)
 *
 * Every PERF_LAT_SIGNAL-th WR is signaled anyway, so that completions
 * keep retiring WRs and the send queue never fills. No receive can be
 * pending while this waits for room: in a ping-pong the peer only sends
 * after our WR.
 *
 * Return: 0, or a negative errno (reported).
 */
int perf_post_tracked(struct perf_ep *ep, struct pw_send_wr *wr, bool signal)
{
	struct pw_send_wr *bad = NULL;
	struct pw_wc wc;
	int err;

	while (ep->sends_posted - ep->sends_done + 1 >= ep->attr.cap.max_send_wr) {
		err = perf_next_wc(ep, &wc, PERF_STALL_TIMEOUT_MS);
		if (!err)
			err = perf_reap_send(ep, &wc);
		if (err)
			return err;
	}
	if ((ep->sends_posted + 1) % PERF_LAT_SIGNAL == 0)
		signal = true;
	wr->wr_id = (wr->wr_id & PERF_WRID_CTRL) | ep->sends_posted;
	if (signal)
		wr->send_flags |= PW_SEND_SIGNALED;
	else
		wr->send_flags &= ~(unsigned int)PW_SEND_SIGNALED;
	err = pw_post_send(ep->qp, wr, &bad);
	if (err) {
		perf_fail("QP %u: pw_post_send(%s) failed: %s (%s)", ep->idx,
			  pw_wr_opcode_str(wr->opcode), strerror(-err),
			  pw_last_error());
		return err;
	}
	ep->sends_posted++;
	return 0;
}

/**
 * perf_wait_recv() - wait for the next receive completion
 *
 * Send completions met on the way are accounted (perf_reap_send()).
 *
 * Return: 0 with a successful receive in *@out, -EIO on an error
 * completion (reported), or the error of perf_next_wc().
 */
int perf_wait_recv(struct perf_ep *ep, struct pw_wc *out, int timeout_ms)
{
	int err;

	for (;;) {
		err = perf_next_wc(ep, out, timeout_ms);
		if (err)
			return err;
		if (out->wr_id & PERF_WRID_RECV) {
			if (out->status != PW_WC_SUCCESS) {
				perf_print_wc_error(ep, out, "receive");
				return -EIO;
			}
			return 0;
		}
		err = perf_reap_send(ep, out);
		if (err)
			return err;
	}
}

/*
 * Wait until every tracked send WR has completed; the last one posted
 * must have been signaled (perf_post_tracked(..., true)).
 */
int perf_drain_sends(struct perf_ep *ep, int timeout_ms)
{
	struct pw_wc wc;
	int err;

	while (ep->sends_done < ep->sends_posted) {
		err = perf_next_wc(ep, &wc, timeout_ms);
		if (!err)
			err = perf_reap_send(ep, &wc);
		if (err)
			return err;
	}
	return 0;
}

/* The counters a RESULT carries, in wire order. */
static uint64_t *ctrl_stat(struct pw_stats *s, int i)
{
	uint64_t *f[PERF_CTRL_NSTATS] = {
		&s->faults, &s->fault_failed, &s->fault_pages,
		&s->fault_around_pages, &s->fault_major, &s->fault_ns,
		&s->stall_ns, &s->naks_sent, &s->naks_received,
		&s->retransmitted_bytes, &s->dropped_bytes, &s->fault_inline,
	};

	return f[i];
}

/* The platform rate's fields a RESULT carries, in wire order. */
static uint64_t *ctrl_plat(struct perf_platform *pl, int i)
{
	uint64_t *f[PERF_CTRL_NPLAT] = {
		&pl->kind, &pl->method, &pl->bytes, &pl->ns, &pl->out,
		&pl->total,
	};

	return f[i];
}

/*
 * SEND a control message from the ctrl area's first slot: @n u64 fields
 * from offset 8 (RESULT: two, then the counters and the platform rate).
 */
static int ctrl_send_msg(struct perf_ep *ep, uint32_t type, const uint64_t *f,
			 unsigned int n)
{
	struct pw_send_wr wr;
	struct pw_sge sge;
	struct pw_stats st;

	_Static_assert(PERF_CTRL_MSG_LEN <= PERF_CTRL_SLOT, "ctrl slot too small");
	_Static_assert(8 + 8 * PERF_CTRL_MAX_FIELDS <= PERF_CTRL_MSG_LEN,
		       "ctrl message too short");
	memset(ep->ctrl, 0, PERF_CTRL_SLOT);
	tool_put32(ep->ctrl, PERF_CTRL_MAGIC);
	tool_put32(ep->ctrl + 4, type);
	for (unsigned int i = 0; i < n && i < PERF_CTRL_MAX_FIELDS; i++)
		tool_put64(ep->ctrl + 8 + 8 * i, f[i]);
	if (type == PERF_CTRL_RESULT &&
	    pw_query_stats(ep->run->ctx, &st, sizeof(st)) == 0)
		for (int i = 0; i < PERF_CTRL_NSTATS; i++)
			tool_put64(ep->ctrl + 24 + 8 * i, *ctrl_stat(&st, i));
	if (type == PERF_CTRL_RESULT)
		for (int i = 0; i < PERF_CTRL_NPLAT; i++)
			tool_put64(ep->ctrl + PERF_CTRL_PLAT_OFF + 8 * i,
				   *ctrl_plat(&ep->plat, i));
	sge.addr = (uint64_t)(uintptr_t)ep->ctrl;
	sge.length = PERF_CTRL_MSG_LEN;
	sge.lkey = ep->lkey;
	memset(&wr, 0, sizeof(wr));
	wr.wr_id = PERF_WRID_CTRL;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.opcode = PW_WR_SEND;
	return perf_post_tracked(ep, &wr, true);
}

static int ctrl_send(struct perf_ep *ep, uint32_t type, uint64_t a, uint64_t b)
{
	uint64_t f[2] = { a, b };

	return ctrl_send_msg(ep, type, f, 2);
}

/*
 * The wr_id of the receive the next control message lands in: the
 * oldest extra one of a region exchange not consumed yet, else the
 * ordinary control receive (the one after all data receives).
 */
static uint64_t ctrl_recv_wrid(const struct perf_ep *ep)
{
	if (ep->xctrl_done == ep->xctrl_posted)
		return PERF_WRID_RECV | ep->data_recvs;
	return PERF_WRID_RECV | PERF_WRID_CTRL | PERF_WRID_XCTRL |
	       ep->xctrl_done;
}

/*
 * Wait for the next control message, check it is one, and return its
 * type and its first @n u64 fields (message offsets 8, 16, ...).
 */
static int ctrl_recv(struct perf_ep *ep, int timeout_ms, uint32_t *type,
		     uint64_t *f, unsigned int n)
{
	const uint8_t *m = ep->ctrl + PERF_CTRL_SLOT;
	uint64_t want = ctrl_recv_wrid(ep);
	struct pw_wc wc;
	int err;

	err = perf_wait_recv(ep, &wc, timeout_ms);
	if (err)
		return err;
	if (wc.wr_id != want) {
		perf_fail("QP %u: expected the control message, got receive #%llu (%u bytes)",
			  ep->idx,
			  (unsigned long long)(wc.wr_id & ~(PERF_WRID_RECV |
							   PERF_WRID_CTRL |
							   PERF_WRID_XCTRL)),
			  wc.byte_len);
		return -EPROTO;
	}
	if (want & PERF_WRID_XCTRL)
		ep->xctrl_done++;
	if (wc.byte_len != PERF_CTRL_MSG_LEN || tool_get32(m) != PERF_CTRL_MAGIC) {
		perf_fail("QP %u: malformed control message (%u bytes)",
			  ep->idx, wc.byte_len);
		return -EPROTO;
	}
	*type = tool_get32(m + 4);
	for (unsigned int i = 0; i < n && i < PERF_CTRL_MAX_FIELDS; i++)
		f[i] = tool_get64(m + 8 + 8 * i);
	return 0;
}

/*
 * Wait for the control message of @type (the one after all data
 * receives and region exchanges).
 */
static int ctrl_wait(struct perf_ep *ep, uint32_t type, int timeout_ms,
		     uint64_t *a, uint64_t *b)
{
	const uint8_t *m = ep->ctrl + PERF_CTRL_SLOT;
	uint64_t f[2];
	uint32_t got;
	int err;

	err = ctrl_recv(ep, timeout_ms, &got, f, 2);
	if (err)
		return err;
	if (got != type) {
		perf_fail("QP %u: control message of type %u, expected %u",
			  ep->idx, got, type);
		return -EPROTO;
	}
	*a = f[0];
	*b = f[1];
	if (type != PERF_CTRL_RESULT)
		return 0;
	for (int i = 0; i < PERF_CTRL_NSTATS; i++)
		*ctrl_stat(&ep->peer_stats, i) = tool_get64(m + 24 + 8 * i);
	for (int i = 0; i < PERF_CTRL_NPLAT; i++)
		*ctrl_plat(&ep->plat, i) = tool_get64(m + PERF_CTRL_PLAT_OFF + 8 * i);
	return 0;
}

/* Post the next extra control receive of a region exchange. */
static int post_xctrl_recv(struct perf_ep *ep)
{
	struct pw_recv_wr wr, *bad = NULL;
	struct pw_sge sge;
	int err;

	sge.addr = (uint64_t)(uintptr_t)(ep->ctrl + PERF_CTRL_SLOT);
	sge.length = PERF_CTRL_SLOT;
	sge.lkey = ep->lkey;
	memset(&wr, 0, sizeof(wr));
	wr.wr_id = PERF_WRID_RECV | PERF_WRID_CTRL | PERF_WRID_XCTRL |
		   ep->xctrl_posted;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	err = pw_post_recv(ep->qp, &wr, &bad);
	if (err) {
		perf_fail("QP %u: pw_post_recv(control) failed: %s (%s)", ep->idx,
			  strerror(-err), pw_last_error());
		return err;
	}
	ep->xctrl_posted++;
	return 0;
}

/**
 * perf_ctrl_region() - a region request and its reply (client)
 *
 * Only when nothing else of @ep is in flight: every completion met on
 * the way is the request's own. The request's send completion is reaped
 * before this returns, so none is left for the caller's loop.
 *
 * Return: 0 (*@rp filled, page counts added to @ep), -EIO when the server
 * found wrong data or could not page out (reported), or another negative
 * errno.
 */
int perf_ctrl_region(struct perf_ep *ep, const struct perf_region_req *rq,
		     struct perf_region_rep *rp)
{
	uint64_t f[PERF_CTRL_MAX_FIELDS] = {
		rq->off, rq->len, rq->size, rq->flags, rq->rot, rq->mod,
		rq->slots,
	};
	uint32_t type;
	int err;

	/* our receive first: the reply must never meet an RNR */
	err = post_xctrl_recv(ep);
	if (!err)
		err = ctrl_send_msg(ep, PERF_CTRL_REGION, f, PERF_CTRL_MAX_FIELDS);
	if (!err)
		err = ctrl_recv(ep, PERF_STALL_TIMEOUT_MS, &type, f, 4);
	if (err)
		return err;
	if (type != PERF_CTRL_REGION_REPLY) {
		perf_fail("QP %u: control message of type %u, expected a region reply",
			  ep->idx, type);
		return -EPROTO;
	}
	err = perf_drain_sends(ep, PERF_STALL_TIMEOUT_MS);
	if (err)
		return err;
	rp->status = f[0];
	rp->detail = f[1];
	rp->out = f[2];
	rp->total = f[3];
	ep->pageout_pages += rp->out;
	ep->pageout_total += rp->total;
	switch (rp->status) {
	case 0:
		return 0;
	case PERF_REGION_BAD_DATA:
		perf_fail("QP %u: the server found wrong data in its memory at rx offset %llu (a WRITE did not land)",
			  ep->idx, (unsigned long long)(rp->detail - 1));
		return -EIO;
	case PERF_REGION_MADV_FAILED:
		perf_fail("QP %u: the server could not page out: madvise(MADV_PAGEOUT): %s",
			  ep->idx, strerror((int)rp->detail));
		return -EIO;
	default:
		perf_fail("QP %u: the server refused the region request (status %llu)",
			  ep->idx, (unsigned long long)rp->status);
		return -EIO;
	}
}

/*
 * Post a receive that no message is meant for: when the server destroys
 * its QP, the library flushes it, which tells us the server is done.
 */
static int post_linger_recv(struct perf_ep *ep)
{
	struct pw_recv_wr wr, *bad = NULL;
	struct pw_sge sge;
	int err;

	sge.addr = (uint64_t)(uintptr_t)(ep->ctrl + 2 * PERF_CTRL_SLOT);
	sge.length = PERF_CTRL_SLOT;
	sge.lkey = ep->lkey;
	memset(&wr, 0, sizeof(wr));
	wr.wr_id = PERF_WRID_LINGER;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	err = pw_post_recv(ep->qp, &wr, &bad);
	if (err)
		perf_fail("QP %u: pw_post_recv(linger) failed: %s (%s)", ep->idx,
			  strerror(-err), pw_last_error());
	return err;
}

/*
 * Wait until the server has disconnected (the linger receive completes,
 * normally flushed), at most PERF_LINGER_MS. The run's result is known
 * by now, so a server that lingers itself only earns a warning.
 */
static void wait_server_close(struct perf_ep *ep)
{
	struct pw_wc wc;
	int n;

	for (;;) {
		if (ep->wcq_len) {
			wc = ep->wcq[ep->wcq_head++];
			ep->wcq_len--;
		} else {
			n = cq_wait(&ep->cqw, &wc, 1, PERF_LINGER_MS);
			if (n < 0) {
				perf_fail("QP %u: warning: the server did not disconnect within %d s",
					  ep->idx, PERF_LINGER_MS / 1000);
				return;
			}
		}
		if (wc.wr_id == PERF_WRID_LINGER)
			return;
	}
}

/**
 * perf_ctrl_client_finish() - tell the server we are done, get its verdict
 *
 * Return: 0 when the server verified its memory, -EIO when it did not
 * (reported), or another negative errno.
 */
int perf_ctrl_client_finish(struct perf_ep *ep)
{
	uint64_t status, detail;
	int err;

	if (ep->recvs_posted != ep->data_recvs) {
		perf_fail("QP %u: internal error: %llu of %llu data receives posted",
			  ep->idx, (unsigned long long)ep->recvs_posted,
			  (unsigned long long)ep->data_recvs);
		return -EPROTO;
	}
	/* The receives first: the RESULT must never meet an RNR. */
	err = perf_post_recv(ep);
	if (!err)
		err = post_linger_recv(ep);
	if (err)
		return err;
	err = ctrl_send(ep, PERF_CTRL_DONE, 0, 0);
	if (err)
		return err;
	err = ctrl_wait(ep, PERF_CTRL_RESULT, PERF_STALL_TIMEOUT_MS,
			&status, &detail);
	if (err)
		return err;
	err = perf_drain_sends(ep, PERF_STALL_TIMEOUT_MS);
	if (err)
		return err;
	wait_server_close(ep);
	if (status) {
		perf_fail("QP %u: the server found wrong data in its memory (code %llu, detail %llu)",
			  ep->idx, (unsigned long long)status,
			  (unsigned long long)detail);
		return -EIO;
	}
	return 0;
}

/**
 * perf_ctrl_server_wait_done() - wait for the client's DONE, serving the
 * region requests that come before it (perf_swap_serve_region())
 *
 * Waits without a time limit: a client that dies makes the library flush
 * the receive, which ends the wait with an error.
 */
int perf_ctrl_server_wait_done(struct perf_ep *ep)
{
	uint64_t f[PERF_CTRL_MAX_FIELDS];
	struct perf_region_req rq;
	struct perf_region_rep rp;
	uint32_t type;
	int err;

	for (;;) {
		err = ctrl_recv(ep, -1, &type, f, PERF_CTRL_MAX_FIELDS);
		if (err)
			return err;
		if (type == PERF_CTRL_DONE)
			return 0;
		if (type != PERF_CTRL_REGION) {
			perf_fail("QP %u: control message of type %u, expected DONE or a region request",
				  ep->idx, type);
			return -EPROTO;
		}
		rq = (struct perf_region_req){
			.off = f[0], .len = f[1], .size = f[2], .flags = f[3],
			.rot = f[4], .mod = f[5], .slots = f[6],
		};
		/* the client's next message must find a receive */
		err = post_xctrl_recv(ep);
		if (err)
			return err;
		perf_swap_serve_region(ep, &rq, &rp);
		f[0] = rp.status;
		f[1] = rp.detail;
		f[2] = rp.out;
		f[3] = rp.total;
		err = ctrl_send_msg(ep, PERF_CTRL_REGION_REPLY, f, 4);
		if (err)
			return err;
	}
}

/**
 * perf_ctrl_server_reply() - send the verdict and wait until it is placed
 * @status: 0 = verified, else a failure code for the client to print
 * @detail: e.g. the offset of the first wrong byte
 */
int perf_ctrl_server_reply(struct perf_ep *ep, uint64_t status, uint64_t detail)
{
	int err;

	err = ctrl_send(ep, PERF_CTRL_RESULT, status, detail);
	if (err)
		return err;
	return perf_drain_sends(ep, PERF_STALL_TIMEOUT_MS);
}

/**
 * perf_ctrl_client_finish_all() - perf_ctrl_client_finish() for all QPs of
 * a single-thread run, phase by phase: DONE on every QP first (the
 * server, one thread too, answers them in QP order), then every RESULT,
 * then the server's disconnects (it destroys its QPs only once it served
 * all of them).
 *
 * Return: 0 when the server verified every QP's memory, else the first
 * failure (reported).
 */
int perf_ctrl_client_finish_all(struct perf_run *run)
{
	uint64_t status[PERF_MAX_QPS], detail[PERF_MAX_QPS];
	int err = 0;

	for (unsigned int i = 0; i < run->qps && !err; i++) {
		struct perf_ep *ep = &run->eps[i];

		if (ep->recvs_posted != ep->data_recvs) {
			perf_fail("QP %u: internal error: %llu of %llu data receives posted",
				  ep->idx, (unsigned long long)ep->recvs_posted,
				  (unsigned long long)ep->data_recvs);
			return -EPROTO;
		}
		err = perf_post_recv(ep);
		if (!err)
			err = post_linger_recv(ep);
		if (!err)
			err = ctrl_send(ep, PERF_CTRL_DONE, 0, 0);
	}
	for (unsigned int i = 0; i < run->qps && !err; i++) {
		struct perf_ep *ep = &run->eps[i];

		err = ctrl_wait(ep, PERF_CTRL_RESULT, PERF_STALL_TIMEOUT_MS,
				&status[i], &detail[i]);
		if (!err)
			err = perf_drain_sends(ep, PERF_STALL_TIMEOUT_MS);
	}
	if (err)
		return err;
	for (unsigned int i = 0; i < run->qps; i++)
		wait_server_close(&run->eps[i]);
	for (unsigned int i = 0; i < run->qps; i++) {
		if (!status[i])
			continue;
		perf_fail("QP %u: the server found wrong data in its memory (code %llu, detail %llu)",
			  i, (unsigned long long)status[i],
			  (unsigned long long)detail[i]);
		err = -EIO;
	}
	return err;
}
