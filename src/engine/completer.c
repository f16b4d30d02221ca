/* SPDX-License-Identifier: MIT */
/*
 * Completer: consumes responses (ACK, NAK, READ_RESP, ATOMIC_RESP), retires
 * send WQEs in order and generates their completions. ACKs are cumulative;
 * a NAK or a READ/ATOMIC response for PSN P acknowledges every request
 * before P (IBA implicit acknowledgement).
 */
#include "core/context.h"
#include "engine/qp.h"

/* Largest RNR back-off honoured, whatever the peer asks for. */
#define PW_MAX_RNR_US 1000000u
/* Longest wait between PAGE_FAULT resends (the back-off's cap). */
#define PW_MAX_FAULT_BACKOFF_US 100000u

/* Progress resets the RNR budget, as rxe does, and the PAGE_FAULT one. */
static void progress_locked(struct pw_qp_i *qp)
{
	qp->rnr_left = qp->rnr_retry == 0 || qp->rnr_retry == 7 ? -1 :
		       qp->rnr_retry == PW_RNR_RETRY_NONE ? 0 : qp->rnr_retry;
	qp->fault_left = qp->retry_cnt;
	qp->fault_backoff = 0;
}

/*
 * Retire WQEs with PSN before @psn as successful. Return false if the peer
 * acknowledged something it cannot have (a READ/ATOMIC with no response, or
 * a request not sent yet): a protocol error.
 */
static bool retire_before_locked(struct pw_qp_i *qp, uint32_t psn)
{
	/* nothing at or after the next unsent request can be acknowledged */
	uint32_t unsent_psn = qp->next_psn - (qp->sq_tail - qp->sq_next);

	if (pw_psn_cmp(psn, unsent_psn) > 0)
		return false;
	while (qp->sq_head != qp->sq_next) {
		struct pw_wqe *w = pw_sq_at(qp, qp->sq_head);

		if (pw_psn_cmp(w->psn, psn) >= 0)
			break;
		if (pw_wqe_is_rd(w))
			return false;
		if (w->status != PW_WC_SUCCESS) {
			/* its payload faulted while being sent */
			pw_qp_fail_locked(qp, PW_QP_CAUSE_LOCAL_WR, w->status);
			return true;
		}
		pw_qp_complete_send_locked(qp, w, PW_WC_SUCCESS);
		qp->sq_head++;
		progress_locked(qp);
	}
	return true;
}

/* The WQE a response for @psn must belong to, or NULL. */
static struct pw_wqe *head_for(struct pw_qp_i *qp, uint32_t psn)
{
	struct pw_wqe *w;

	if (qp->sq_head == qp->sq_next)
		return NULL;
	w = pw_sq_at(qp, qp->sq_head);
	return w->psn == psn ? w : NULL;
}

/*
 * The peer's DROP policy refused @w with PAGE_FAULT: go back to it after
 * the hint, doubled for every further PAGE_FAULT without progress, until
 * retry_cnt runs out (IBA's transport retry counter: RETRY_EXC_ERR).
 */
static void on_fault_nak_locked(struct pw_qp_i *qp, const struct pw_hdr *h)
{
	struct pw_fault_stats *st = &qp->ctx->faults.stats;
	uint64_t us, resent = 0;

	atomic_fetch_add_explicit(&st->naks_received, 1, memory_order_relaxed);
	/*
	 * A fault can take long (swap, a busy worker, one range per round
	 * for a SEND over many buffers): the back-off doubles freely up to
	 * PW_MAX_FAULT_BACKOFF_US, and only NAKs at that cap use up
	 * retry_cnt, so RETRY_EXC_ERR means no progress for about
	 * retry_cnt x 100 ms, not a handful of quick NAKs.
	 */
	if (((h->retry_us ? h->retry_us : 1) << PW_MIN(qp->fault_backoff, 20)) >=
	    PW_MAX_FAULT_BACKOFF_US) {
		if (qp->fault_left == 0) {
			pw_qp_fail_locked(qp, PW_QP_CAUSE_RETRY_EXC, PW_WC_RETRY_EXC_ERR);
			return;
		}
		qp->fault_left--;
	}
	/* what was sent from the NAKed request on goes out again */
	for (uint32_t i = qp->sq_head; i != qp->sq_next; i++) {
		const struct pw_wqe *x = pw_sq_at(qp, i);

		if (!pw_wqe_is_rd(x))
			resent += x->length;
	}
	atomic_fetch_add_explicit(&st->retransmitted_bytes, resent,
				  memory_order_relaxed);
	qp->sq_next = qp->sq_head;
	qp->rd_out = 0;
	us = (h->retry_us ? h->retry_us : 1) << PW_MIN(qp->fault_backoff, 20);
	if (us > PW_MAX_FAULT_BACKOFF_US)
		us = PW_MAX_FAULT_BACKOFF_US;
	qp->fault_backoff++;
	qp->retry_at_ns = pw_now_ns() + us * 1000;
}

static void on_nak_locked(struct pw_qp_i *qp, struct pw_wqe *w,
			  const struct pw_hdr *h)
{
	uint64_t us;

	if (h->syndrome == PW_SYN_PAGE_FAULT) {
		on_fault_nak_locked(qp, h);
		return;
	}
	if (h->syndrome != PW_SYN_RNR) {
		pw_qp_fail_locked(qp, PW_QP_CAUSE_REMOTE_NAK,
				  pw_syndrome_to_status(h->syndrome));
		return;
	}
	if (qp->rnr_left == 0) {
		pw_qp_fail_locked(qp, PW_QP_CAUSE_RETRY_EXC, PW_WC_RNR_RETRY_EXC_ERR);
		return;
	}
	if (qp->rnr_left > 0)
		qp->rnr_left--;
	/* go back to the NAKed request; everything after it was dropped */
	qp->sq_next = qp->sq_head;
	qp->rd_out = 0;
	(void)w;
	us = h->retry_us ? h->retry_us : 1;
	if (us > PW_MAX_RNR_US)
		us = PW_MAX_RNR_US;
	qp->retry_at_ns = pw_now_ns() + us * 1000;
}

/* Store an atomic's original value under a use of the sink's MR. */
static bool store_result(struct pw_qp_i *qp, const struct pw_sge *sge,
			 uint64_t v)
{
	struct pw_kiov k = { (void *)(uintptr_t)sge->addr, 8, sge->lkey };
	struct pw_mr_i *uses[1];
	struct iovec iov;
	int nuses;
	bool ok;

	if (pw_kiov_get(&qp->ctx->keys, &k, 1, 0, 0, 8, &iov, uses, &nuses) != 1)
		return false;
	ok = pw_safe_write(iov.iov_base, &v, 8) == 8;
	pw_kiov_put(uses, nuses);
	return ok;
}

void pw_comp_begin(struct pw_qp_i *qp)
{
	struct pw_rx *rx = &qp->rx;
	struct pw_hdr *h = &rx->hdr;
	struct pw_wqe *w = NULL;
	bool ok = true;
	uint64_t orig;

	rx->skip = false;
	rx->fault = false;
	rx->dst = DST_DISCARD;
	qp->skip_residency = false;
	pthread_mutex_lock(&qp->lock);
	if (pw_qp_get_state(qp) == PW_QPS_ERR) {
		rx->skip = true;
		/*
		 * Completion accuracy: what the peer still acknowledges of
		 * the WQEs the error left sent (qp.c, pw_qp_fail_drain_locked);
		 * a NAK or a response is the end of that.
		 */
		if (qp->drain)
			pw_qp_drain_ack_locked(qp, h->opcode == PW_OP_ACK ? h->psn + 1 :
					       h->psn, h->opcode == PW_OP_ACK);
		goto out;
	}
	switch (h->opcode) {
	case PW_OP_ACK:
		ok = retire_before_locked(qp, h->psn + 1);
		break;
	case PW_OP_NAK:
		ok = retire_before_locked(qp, h->psn);
		if (ok && pw_qp_get_state(qp) != PW_QPS_ERR) {
			w = head_for(qp, h->psn);
			ok = w != NULL;
			if (ok)
				on_nak_locked(qp, w, h);
		}
		break;
	case PW_OP_READ_RESP:
		ok = retire_before_locked(qp, h->psn);
		if (!ok || pw_qp_get_state(qp) == PW_QPS_ERR) {
			rx->skip = true;
			break;
		}
		w = head_for(qp, h->psn);
		ok = w && w->opcode == PW_WR_RDMA_READ &&
		     h->payload_len - PW_WIRE_READ_TRAILER_LEN == w->length;
		if (!ok)
			break;
		pw_rx_set_sges(rx, w->sge, w->num_sge);
		/* local ODP: a sink not in its page table stalls the QP */
		pw_qp_fault_check_locked(qp);
		break;
	case PW_OP_ATOMIC_RESP:
		ok = retire_before_locked(qp, h->psn);
		if (!ok || pw_qp_get_state(qp) == PW_QPS_ERR)
			break;
		w = head_for(qp, h->psn);
		ok = w && (w->opcode == PW_WR_ATOMIC_CMP_AND_SWP ||
			   w->opcode == PW_WR_ATOMIC_FETCH_AND_ADD);
		if (!ok)
			break;
		orig = h->orig;
		/* the result buffer may be deregistered or unmapped by now */
		if (!store_result(qp, &w->sge[0], orig)) {
			pw_qp_fail_locked(qp, PW_QP_CAUSE_LOCAL_WR, PW_WC_LOC_PROT_ERR);
			break;
		}
		pw_qp_complete_send_locked(qp, w, PW_WC_SUCCESS);
		qp->sq_head++;
		qp->rd_out--;
		progress_locked(qp);
		break;
	}
out:
	pthread_mutex_unlock(&qp->lock);
	if (!ok)
		pw_rx_protocol_error(qp);
}

/* A READ_RESP has fully arrived: complete the READ with the outcome. */
void pw_comp_finish(struct pw_qp_i *qp)
{
	struct pw_rx *rx = &qp->rx;
	struct pw_wqe *w;

	if (rx->skip || rx->hdr.opcode != PW_OP_READ_RESP)
		return;
	pthread_mutex_lock(&qp->lock);
	w = head_for(qp, rx->hdr.psn);
	if (pw_qp_get_state(qp) != PW_QPS_ERR && w) {
		if (rx->fault) {
			pw_qp_fail_locked(qp, PW_QP_CAUSE_LOCAL_WR, PW_WC_LOC_PROT_ERR);
		} else if (rx->trailer_syn != PW_SYN_OK) {
			pw_qp_fail_locked(qp, PW_QP_CAUSE_REMOTE_NAK,
					  pw_syndrome_to_status(rx->trailer_syn));
		} else {
			pw_qp_complete_send_locked(qp, w, PW_WC_SUCCESS);
			qp->sq_head++;
			qp->rd_out--;
			progress_locked(qp);
		}
	}
	pthread_mutex_unlock(&qp->lock);
}
