/* SPDX-License-Identifier: MIT */
/*
 * Requester: turns the next posted send WQE into a request message, in
 * posting order (RC ordering), honouring the READ/ATOMIC credit the peer
 * granted (max_dest_rd_atomic), fences, and the RNR retry timer.
 */
#include "core/context.h"
#include "engine/qp.h"

static uint8_t wire_op(uint8_t op)
{
	static const uint8_t map[] = {
		[PW_WR_RDMA_WRITE] = PW_OP_WRITE,
		[PW_WR_RDMA_WRITE_WITH_IMM] = PW_OP_WRITE_IMM,
		[PW_WR_SEND] = PW_OP_SEND,
		[PW_WR_SEND_WITH_IMM] = PW_OP_SEND_IMM,
		[PW_WR_RDMA_READ] = PW_OP_READ_REQ,
		[PW_WR_ATOMIC_CMP_AND_SWP] = PW_OP_ATOMIC_CS,
		[PW_WR_ATOMIC_FETCH_AND_ADD] = PW_OP_ATOMIC_FA,
	};

	return map[op];
}

/* The fault engine has the request's source pages: send it now. */
static void req_fault_done(struct pw_fault *f)
{
	struct pw_qp_i *qp = container_of(f, struct pw_qp_i, req_fault);

	if (!qp->in_engine)
		return;		/* destroyed meanwhile: pw_destroy_qp cancels */
	pthread_mutex_lock(&qp->lock);
	/* no mapping: sending finds EFAULT and fails the WR (LOC_PROT_ERR) */
	/* one round per request: what is still missing faults in the copy */
	qp->req_src_done = true;
	qp->req_fault_wait = false;
	pw_tx_flush_locked(qp);
	pthread_mutex_unlock(&qp->lock);
}

/*
 * Local ODP: the payload of a WRITE or SEND is read by sendmsg
 * on whatever thread transmits; a source page not in its MR's page table
 * (or swapped out, for 1 MiB and more) is faulted first, inline when it
 * cannot need I/O, else through the worker while the request waits.
 * Return true when the request must wait.
 */
static bool req_source_faults_locked(struct pw_qp_i *qp, const struct pw_wqe *w)
{
	struct pw_fault miss;

	if (w->inlined || !w->length || pw_wqe_is_rd(w) ||
	    w->opcode == PW_WR_ATOMIC_CMP_AND_SWP ||
	    w->opcode == PW_WR_ATOMIC_FETCH_AND_ADD ||
	    (qp->req_src_done && qp->req_fault_psn == w->psn))
		return false;
	for (int i = 0; i < (int)w->num_sge; i++) {
		if (!pw_qp_range_miss(qp, w->sge[i].lkey, w->sge[i].addr,
				      w->sge[i].length, false, true, &miss))
			continue;
		if (pw_fault_try_inline(&qp->ctx->faults, &miss))
			continue;
		/*
		 * The request fields only: state and list links belong to
		 * the fault engine (its lock), and the reaper may still be
		 * finishing this fault's previous round.
		 */
		qp->req_fault.key = miss.key;
		qp->req_fault.addr = miss.addr;
		qp->req_fault.len = miss.len;
		qp->req_fault.write = miss.write;
		qp->req_fault.done = req_fault_done;
		qp->req_fault_wait = true;
		qp->req_src_done = false;
		qp->req_fault_psn = w->psn;
		pw_fault_submit(&qp->ctx->faults, &qp->req_fault);
		return true;
	}
	return false;
}

bool pw_req_next_locked(struct pw_qp_i *qp)
{
	struct pw_tx *tx = &qp->tx;
	struct pw_wqe *w;
	struct pw_hdr h = { 0 };
	uint32_t inflight, n;
	bool rd, owed;

	if (qp->retry_at_ns || qp->req_fault_wait || qp->sq_next == qp->sq_tail)
		return false;
	w = pw_sq_at(qp, qp->sq_next);
	if (w->status != PW_WC_SUCCESS) {
		/*
		 * A WR that failed local checks completes in order: wait until
		 * everything before it is acknowledged, then fail the QP.
		 */
		if (qp->sq_head == qp->sq_next)
			pw_qp_fail_locked(qp, PW_QP_CAUSE_LOCAL_WR, w->status);
		return false;
	}
	rd = pw_wqe_is_rd(w);
	if ((rd && qp->rd_out >= qp->rd_max) || (w->fence && qp->rd_out))
		return false;
	if (req_source_faults_locked(qp, w))
		return false;
	/* NOTIFY: a range the target said is gone is asked for first */
	if (!pw_notify_req_ok_locked(qp, w))
		return pw_notify_next_locked(qp);

	h.opcode = wire_op(w->opcode);
	/*
	 * Ask for a prompt ACK (IBA AckReq) where one is awaited:
	 * - a signalled request with nothing posted behind it: the
	 *   application waits on it now (a ping-pong, the end of a window);
	 * - while requests keep coming, one in a quarter of those in flight
	 *   once any of them is signalled: RC completes in order, so the ACK
	 *   of a later request completes them all;
	 * - one in every quarter of the send queue regardless, so that slots
	 *   come back before it fills (PW_ACK_REQ_DIV).
	 * Otherwise the responder coalesces. An ACK per signalled message
	 * costs a wakeup on each side: 5% of 1 MiB WRITE bandwidth with
	 * every WRITE signalled (libfabric's default). A signalled request
	 * that did not ask is ACKed with a later one, or by the responder's
	 * PW_ACK_DELAY_NS if the next one stalls (a local fault).
	 */
	h.flags = w->solicited ? PW_WF_SOLICITED : 0;
	owed = w->signaled || qp->ackreq_owed;
	inflight = qp->sq_next - qp->sq_head + 1;
	n = ++qp->req_no_ackreq;
	if (n >= PW_MAX(1u, qp->sq_max / PW_ACK_REQ_DIV) ||
	    (owed && (qp->sq_next + 1 == qp->sq_tail ||
		      n >= PW_MAX(1u, inflight / PW_ACK_REQ_DIV)))) {
		h.flags |= PW_WF_ACK_REQ;
		qp->req_no_ackreq = 0;
		owed = false;
	}
	qp->ackreq_owed = owed;
	h.psn = w->psn;
	h.rkey = w->rkey;
	h.raddr = w->raddr;
	tx->ndata = 0;
	tx->data_left = 0;
	switch (w->opcode) {
	case PW_WR_RDMA_READ:
		h.read_len = w->length;
		break;
	case PW_WR_ATOMIC_CMP_AND_SWP:
	case PW_WR_ATOMIC_FETCH_AND_ADD:
		h.compare_add = w->compare_add;
		h.swap = w->swap;
		break;
	case PW_WR_RDMA_WRITE_WITH_IMM:
	case PW_WR_SEND_WITH_IMM:
		h.imm = w->imm;
		/* fall through */
	default:
		h.payload_len = w->length;
		tx->data_left = w->length;
		if (w->inlined) {
			/* our own copy: no MR to check */
			tx->data[0].base = w->inline_buf;
			tx->data[0].len = w->length;
			tx->data[0].key = 0;
			tx->ndata = w->length ? 1 : 0;
			break;
		}
		for (int i = 0; i < w->num_sge; i++) {
			if (!w->sge[i].length)
				continue;
			tx->data[tx->ndata].base = (void *)(uintptr_t)w->sge[i].addr;
			tx->data[tx->ndata].len = w->sge[i].length;
			tx->data[tx->ndata++].key = w->sge[i].lkey;
		}
		break;
	}
	pw_tx_start_locked(qp, TX_REQ, &h);
	tx->wqe = w;
	tx->trailer_len = 0;
	if (rd)
		qp->rd_out++;
	qp->sq_next++;
	return true;
}
