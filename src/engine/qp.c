/* SPDX-License-Identifier: MIT */
/*
 * Queue pairs: creation, the error state and flushing, and the verbs entry
 * points pw_post_send / pw_post_recv / pw_destroy_qp.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/context.h"
#include "engine/qp.h"
#include "mr/mr.h"

static uint32_t def(uint32_t v, uint32_t d)
{
	return v ? v : d;
}

struct pw_qp_i *pw_qp_create(struct pw_pd *pd, struct pw_qp_init_attr *attr,
			     int fd)
{
	struct pw_context *ctx = pd->context;
	struct pw_qp_cap *cap = &attr->cap;
	struct pw_qp_i *qp;

	if (!attr->send_cq || !attr->recv_cq ||
	    attr->send_cq->context != ctx || attr->recv_cq->context != ctx ||
	    cap->max_send_wr > PW_MAX_QP_WR || cap->max_recv_wr > PW_MAX_QP_WR ||
	    cap->max_send_sge > PW_MAX_SGE || cap->max_recv_sge > PW_MAX_SGE ||
	    cap->max_inline_data > PW_MAX_INLINE_DATA ||
	    attr->max_rd_atomic > PW_MAX_RD_ATOMIC ||
	    attr->max_dest_rd_atomic > PW_MAX_RD_ATOMIC ||
	    attr->rnr_retry < PW_RNR_RETRY_NONE || attr->rnr_retry > 7 ||
	    attr->retry_cnt < PW_RNR_RETRY_NONE || attr->retry_cnt > 7 ||
	    attr->fault_policy > PW_FAULT_NOTIFY ||
	    (attr->peer_timeout_ms && (attr->peer_timeout_ms < PW_MIN_PEER_TIMEOUT_MS ||
				       attr->peer_timeout_ms > PW_MAX_PEER_TIMEOUT_MS))) {
		pw_set_error("QP attributes out of range (CQs of this context, <= %d WRs, <= %d SGEs, <= %d inline bytes, <= %d rd_atomic, rnr_retry and retry_cnt -1..7, fault_policy 0..3, peer_timeout_ms 0 or %d..%d)",
			     PW_MAX_QP_WR, PW_MAX_SGE, PW_MAX_INLINE_DATA,
			     PW_MAX_RD_ATOMIC, PW_MIN_PEER_TIMEOUT_MS, PW_MAX_PEER_TIMEOUT_MS);
		errno = EINVAL;
		return NULL;
	}
	qp = calloc(1, sizeof(*qp));
	if (!qp)
		goto err_nomem;
	qp->ctx = ctx;
	qp->fd = fd;
	pthread_mutex_init(&qp->lock, NULL);
	qp->src.kind = PW_SRC_QP;
	/* connected by cm.c (or the fuzz hook), which moves it to RTS */
	atomic_init(&qp->state, PW_QPS_INIT);

	cap->max_send_wr = def(cap->max_send_wr, PW_DEF_WR);
	cap->max_recv_wr = def(cap->max_recv_wr, PW_DEF_WR);
	cap->max_send_sge = def(cap->max_send_sge, PW_DEF_SGE);
	cap->max_recv_sge = def(cap->max_recv_sge, PW_DEF_SGE);
	cap->max_inline_data = def(cap->max_inline_data, PW_DEF_INLINE);
	attr->max_rd_atomic = def(attr->max_rd_atomic, PW_DEF_RD_ATOMIC);
	attr->max_dest_rd_atomic = def(attr->max_dest_rd_atomic, PW_DEF_RD_ATOMIC);
	attr->min_rnr_timer_us = def(attr->min_rnr_timer_us, PW_DEF_RNR_TIMER_US);

	qp->sq_max = cap->max_send_wr;
	qp->sq_cap = pw_roundup_pow2(qp->sq_max);
	qp->rq_max = cap->max_recv_wr;
	qp->rq_cap = pw_roundup_pow2(qp->rq_max);
	qp->max_send_sge = cap->max_send_sge;
	qp->max_recv_sge = cap->max_recv_sge;
	qp->max_inline = cap->max_inline_data;
	qp->sq_sig_all = attr->sq_sig_all;
	qp->rnr_retry = attr->rnr_retry;
	qp->min_rnr_timer_us = attr->min_rnr_timer_us;
	qp->dest_rd_max = attr->max_dest_rd_atomic;
	qp->rd_max = attr->max_rd_atomic;
	/* IBA: 7 means retry forever; 0 here is "default", i.e. 7 */
	qp->rnr_left = attr->rnr_retry == 0 || attr->rnr_retry == 7 ? -1 :
		       attr->rnr_retry == PW_RNR_RETRY_NONE ? 0 : attr->rnr_retry;
	/* PAGE_FAULT resends: IBA's retry_cnt, never infinite (7 = seven) */
	qp->retry_cnt = attr->retry_cnt == 0 ? 7 :
			attr->retry_cnt == PW_RNR_RETRY_NONE ? 0 : attr->retry_cnt;
	qp->fault_left = qp->retry_cnt;
	qp->fault_policy = attr->fault_policy ? attr->fault_policy :
			   ctx->fault_policy;
	attr->peer_timeout_ms = def(attr->peer_timeout_ms, ctx->peer_timeout_ms);
	qp->peer_timeout_ms = attr->peer_timeout_ms;

	qp->sq = calloc(qp->sq_cap, sizeof(*qp->sq));
	qp->sq_sge = calloc((size_t)qp->sq_cap * qp->max_send_sge, sizeof(*qp->sq_sge));
	qp->sq_inline = malloc((size_t)qp->sq_cap * qp->max_inline);
	qp->rq = calloc(qp->rq_cap, sizeof(*qp->rq));
	qp->rq_sge = calloc((size_t)qp->rq_cap * qp->max_recv_sge, sizeof(*qp->rq_sge));
	qp->resp_cap = qp->dest_rd_max + 2;
	qp->resp = calloc(qp->resp_cap, sizeof(*qp->resp));
	if (!qp->sq || !qp->sq_sge || !qp->sq_inline || !qp->rq || !qp->rq_sge ||
	    !qp->resp)
		goto err_free;
	for (uint32_t i = 0; i < qp->sq_cap; i++) {
		qp->sq[i].sge = &qp->sq_sge[(size_t)i * qp->max_send_sge];
		qp->sq[i].inline_buf = &qp->sq_inline[(size_t)i * qp->max_inline];
	}
	for (uint32_t i = 0; i < qp->rq_cap; i++)
		qp->rq[i].sge = &qp->rq_sge[(size_t)i * qp->max_recv_sge];
	if (pw_rx_init(&qp->rx))
		goto err_free;
	if (pw_cq_commit(to_cq(attr->send_cq), qp->sq_max))
		goto err_rx;
	if (pw_cq_commit(to_cq(attr->recv_cq), qp->rq_max))
		goto err_commit;

	qp->ibqp.context = ctx;
	qp->ibqp.qp_context = attr->qp_context;
	qp->ibqp.pd = pd;
	qp->ibqp.send_cq = attr->send_cq;
	qp->ibqp.recv_cq = attr->recv_cq;
	qp->ibqp.qp_num = atomic_fetch_add(&ctx->next_qpn, 1) & 0xffffff;
	atomic_fetch_add(&to_pd(pd)->users, 1);
	atomic_fetch_add(&to_cq(attr->send_cq)->users, 1);
	atomic_fetch_add(&to_cq(attr->recv_cq)->users, 1);
	return qp;

err_commit:
	pw_cq_uncommit(to_cq(attr->send_cq), qp->sq_max);
err_rx:
	pw_rx_fini(&qp->rx);
err_free:
	free(qp->resp);
	free(qp->rq_sge);
	free(qp->rq);
	free(qp->sq_inline);
	free(qp->sq_sge);
	free(qp->sq);
	pthread_mutex_destroy(&qp->lock);
	free(qp);
err_nomem:
	errno = ENOMEM;
	return NULL;
}

/* Undo pw_qp_create(); the engine must no longer know the QP. */
void pw_qp_free(struct pw_qp_i *qp)
{
	struct pw_cq_i *scq = to_cq(qp->ibqp.send_cq);
	struct pw_cq_i *rcq = to_cq(qp->ibqp.recv_cq);

	pw_cq_uncommit(scq, qp->sq_max);
	pw_cq_uncommit(rcq, qp->rq_max);
	atomic_fetch_sub(&scq->users, 1);
	atomic_fetch_sub(&rcq->users, 1);
	atomic_fetch_sub(&to_pd(qp->ibqp.pd)->users, 1);
	if (qp->fd >= 0)
		close(qp->fd);
	pw_rx_fini(&qp->rx);
	free(qp->resp);
	free(qp->rq_sge);
	free(qp->rq);
	free(qp->sq_inline);
	free(qp->sq_sge);
	free(qp->sq);
	pthread_mutex_destroy(&qp->lock);
	free(qp);
}

static enum pw_wc_opcode wc_opcode(uint8_t op)
{
	switch (op) {
	case PW_WR_RDMA_WRITE:
	case PW_WR_RDMA_WRITE_WITH_IMM:
		return PW_WC_RDMA_WRITE;
	case PW_WR_RDMA_READ:
		return PW_WC_RDMA_READ;
	case PW_WR_ATOMIC_CMP_AND_SWP:
		return PW_WC_COMP_SWAP;
	case PW_WR_ATOMIC_FETCH_AND_ADD:
		return PW_WC_FETCH_ADD;
	default:
		return PW_WC_SEND;
	}
}

void pw_qp_complete_send_locked(struct pw_qp_i *qp, struct pw_wqe *w,
				enum pw_wc_status status)
{
	struct pw_wc wc;

	/* verbs: errors always complete, success only when signalled */
	if (status == PW_WC_SUCCESS && !w->signaled)
		return;
	memset(&wc, 0, sizeof(wc));
	wc.wr_id = w->wr_id;
	wc.status = status;
	wc.opcode = wc_opcode(w->opcode);
	wc.byte_len = w->length;
	wc.qp_num = qp->ibqp.qp_num;
	pw_cq_push(to_cq(qp->ibqp.send_cq), &wc, false);
}

void pw_qp_complete_recv_locked(struct pw_qp_i *qp, struct pw_rqe *r,
				enum pw_wc_status status, uint32_t byte_len,
				const struct pw_hdr *h)
{
	struct pw_wc wc;
	bool solicited = false;

	memset(&wc, 0, sizeof(wc));
	wc.wr_id = r->wr_id;
	wc.status = status;
	wc.opcode = PW_WC_RECV;
	wc.byte_len = byte_len;
	wc.qp_num = qp->ibqp.qp_num;
	if (h) {
		if (h->opcode == PW_OP_WRITE_IMM)
			wc.opcode = PW_WC_RECV_RDMA_WITH_IMM;
		if (h->opcode == PW_OP_WRITE_IMM || h->opcode == PW_OP_SEND_IMM) {
			wc.wc_flags |= PW_WC_WITH_IMM;
			wc.imm_data = h->imm;
		}
		solicited = h->flags & PW_WF_SOLICITED;
	}
	pw_cq_push(to_cq(qp->ibqp.recv_cq), &wc, solicited);
}

/*
 * Enter the error state (IBA 10.3.1): the state, the cause and its event,
 * every posted receive flushed, the responder's queued responses dropped.
 * The send queue is the caller's to resolve.
 */
static void enter_err_locked(struct pw_qp_i *qp, enum pw_qp_cause cause)
{
	atomic_store_explicit(&qp->state, PW_QPS_ERR, memory_order_release);
	qp->err_cause = cause;
	/* the application's own pw_disconnect / pw_destroy_qp: no event */
	if (cause == PW_QP_CAUSE_PEER_DISCONNECTED)
		pw_async_post_qp(qp->ctx, PW_EVENT_QP_PEER_DISCONNECTED,
				 &qp->ibqp, cause);
	else if (cause != PW_QP_CAUSE_NONE)
		pw_async_post_qp(qp->ctx, PW_EVENT_QP_FATAL, &qp->ibqp, cause);
	for (uint32_t c = qp->rq_head; c != qp->rq_tail; c++)
		pw_qp_complete_recv_locked(qp, pw_rq_at(qp, c),
					   PW_WC_WR_FLUSH_ERR, 0, NULL);
	qp->rq_head = qp->rq_tail;
	/* an established connection's channel: DISCONNECTED */
	pw_cm_qp_error_locked(qp);
	/*
	 * Queued responses are dropped, except a fatal NAK (the peer must
	 * learn why). The requests before the oldest dropped one were executed
	 * and lose their implicit acknowledgement with it, so the coalesced
	 * ACK is moved to cover exactly those: the tx sends it before shutting
	 * the write side, and the peer does not see executed requests fail.
	 */
	if (!qp->fatal_nak && qp->resp_count) {
		uint32_t p0 = qp->resp[qp->resp_head].psn;

		if (!qp->ack_pending || pw_psn_cmp(qp->ack_psn, p0) >= 0)
			qp->ack_psn = p0 - 1;
		qp->ack_pending = true;
		qp->resp_count = 0;
	}
}

/* Every send WQE completes now: @culprit (if any) with @status, the rest flushed. */
static void flush_sq_locked(struct pw_qp_i *qp, struct pw_wqe *culprit,
			    enum pw_wc_status status)
{
	for (uint32_t c = qp->sq_head; c != qp->sq_tail; c++) {
		struct pw_wqe *w = pw_sq_at(qp, c);

		pw_qp_complete_send_locked(qp, w, w == culprit ? status :
					   PW_WC_WR_FLUSH_ERR);
	}
	qp->sq_head = qp->sq_next = qp->sq_tail;
	qp->rd_out = 0;
}

void pw_qp_fail_at_locked(struct pw_qp_i *qp, enum pw_qp_cause cause,
			  struct pw_wqe *culprit, enum pw_wc_status status)
{
	if (pw_qp_get_state(qp) == PW_QPS_ERR) {
		/* whatever the peer still owed will not come now */
		if (qp->drain)
			pw_qp_drain_end_locked(qp);
		return;
	}
	enter_err_locked(qp, cause);
	flush_sq_locked(qp, culprit, status);
}

void pw_qp_fail_locked(struct pw_qp_i *qp, enum pw_qp_cause cause,
		       enum pw_wc_status head_status)
{
	pw_qp_fail_at_locked(qp, cause, qp->sq_head != qp->sq_tail ?
			     pw_sq_at(qp, qp->sq_head) : NULL, head_status);
}

/*
 * Completion accuracy (IBA: only unacknowledged WRs may be flushed): the
 * QP fails for a reason the peer has not caused in our request stream (a
 * local WR's source vanished mid-send, or we refused one of its
 * requests), so the WRITEs and SENDs before @culprit (all of those sent,
 * when there is none) that the peer executed are still ACKed by it: the
 * peer sends its coalesced ACK before it shuts its side. They wait for
 * that ACK (or a NAK, EOF, the silence bound, pw_destroy_qp); then
 * @culprit completes with @status and the rest is flushed, in order. A
 * READ or atomic ends the wait: a failing peer drops its responses.
 */
void pw_qp_fail_drain_locked(struct pw_qp_i *qp, enum pw_qp_cause cause,
			     struct pw_wqe *culprit, enum pw_wc_status status)
{
	uint32_t end = qp->sq_next, e;

	if (pw_qp_get_state(qp) == PW_QPS_ERR) {
		if (qp->drain)
			pw_qp_drain_end_locked(qp);
		return;
	}
	for (uint32_t c = qp->sq_head; culprit && c != qp->sq_next; c++)
		if (pw_sq_at(qp, c) == culprit) {
			end = c;
			break;
		}
	for (e = qp->sq_head; e != end && !pw_wqe_is_rd(pw_sq_at(qp, e)); e++)
		;
	if (e == qp->sq_head) {
		pw_qp_fail_at_locked(qp, cause, culprit, status);
		return;
	}
	enter_err_locked(qp, cause);
	qp->drain = true;
	qp->drain_end = e;
	qp->drain_culprit = culprit;
	qp->drain_status = status;
	qp->rd_out = 0;
}

void pw_qp_drain_end_locked(struct pw_qp_i *qp)
{
	qp->drain = false;
	flush_sq_locked(qp, qp->drain_culprit, qp->drain_status);
	qp->drain_culprit = NULL;
}

void pw_qp_drain_ack_locked(struct pw_qp_i *qp, uint32_t psn, bool more)
{
	while (qp->sq_head != qp->drain_end) {
		struct pw_wqe *w = pw_sq_at(qp, qp->sq_head);

		if (pw_psn_cmp(w->psn, psn) >= 0)
			break;
		pw_qp_complete_send_locked(qp, w, PW_WC_SUCCESS);
		qp->sq_head++;
	}
	if (!more || qp->sq_head == qp->drain_end)
		pw_qp_drain_end_locked(qp);
}

void pw_qp_fatal(struct pw_qp_i *qp, enum pw_qp_cause cause,
		 enum pw_wc_status status)
{
	pthread_mutex_lock(&qp->lock);
	pw_qp_fail_locked(qp, cause, status);
	pw_tx_flush_locked(qp);
	pthread_mutex_unlock(&qp->lock);
}

void pw_qp_fatal_nak_locked(struct pw_qp_i *qp, uint32_t psn, uint32_t syn,
			    enum pw_qp_cause cause, enum pw_wc_status head_status)
{
	struct pw_resp r = { .op = PW_OP_NAK, .psn = psn, .syndrome = syn };

	if (pw_qp_get_state(qp) != PW_QPS_ERR && pw_resp_push_locked(qp, &r))
		qp->fatal_nak = true;
	pw_qp_fail_locked(qp, cause, head_status);
}

void pw_qp_refuse_locked(struct pw_qp_i *qp, uint32_t psn, uint32_t syn)
{
	struct pw_resp r = { .op = PW_OP_NAK, .psn = psn, .syndrome = syn };

	if (pw_qp_get_state(qp) != PW_QPS_ERR && pw_resp_push_locked(qp, &r))
		qp->fatal_nak = true;
	pw_qp_fail_drain_locked(qp, PW_QP_CAUSE_RESPONDER, NULL,
				PW_WC_WR_FLUSH_ERR);
}

enum pw_qp_cause pw_qp_cause_of_errno(int err)
{
	switch (err) {
	case ETIMEDOUT:
		return PW_QP_CAUSE_PEER_TIMEOUT;
	case EPIPE:
		return PW_QP_CAUSE_PEER_CLOSED;
	default:
		return PW_QP_CAUSE_PEER_RESET;
	}
}

enum pw_wc_status pw_syndrome_to_status(uint32_t syndrome)
{
	switch (syndrome) {
	case PW_SYN_RNR:
		return PW_WC_RNR_RETRY_EXC_ERR;
	case PW_SYN_INVALID_REQ:
		return PW_WC_REM_INV_REQ_ERR;
	case PW_SYN_REMOTE_ACCESS:
		return PW_WC_REM_ACCESS_ERR;
	case PW_SYN_REMOTE_OP:
		return PW_WC_REM_OP_ERR;
	default:
		return PW_WC_FATAL_ERR;
	}
}

enum pw_wc_status pw_qp_check_sges(struct pw_qp_i *qp, const struct pw_sge *sge,
				   int n, bool write, uint64_t *total)
{
	struct pw_keytable *kt = &qp->ctx->keys;
	uint64_t sum = 0;

	for (int i = 0; i < n; i++) {
		struct pw_mr_i *mr;
		bool ok;

		sum += sge[i].length;
		if (!sge[i].length)
			continue;
		mr = pw_mr_get(kt, sge[i].lkey);
		if (!mr)
			return PW_WC_LOC_PROT_ERR;
		ok = mr->ibmr.pd == qp->ibqp.pd &&
		     (!write || (mr->ibmr.access & PW_ACCESS_LOCAL_WRITE)) &&
		     pw_mr_covers(mr, sge[i].addr, sge[i].length);
		pw_mr_put(mr);
		if (!ok)
			return PW_WC_LOC_PROT_ERR;
	}
	*total = sum;
	return PW_WC_SUCCESS;
}

static int check_send_wr(struct pw_qp_i *qp, const struct pw_send_wr *wr)
{
	bool inl = wr->send_flags & PW_SEND_INLINE;
	bool atomic = wr->opcode == PW_WR_ATOMIC_CMP_AND_SWP ||
		      wr->opcode == PW_WR_ATOMIC_FETCH_AND_ADD;

	if ((unsigned int)wr->opcode > PW_WR_ATOMIC_FETCH_AND_ADD ||
	    wr->num_sge < 0 || (uint32_t)wr->num_sge > qp->max_send_sge ||
	    (wr->num_sge && !wr->sg_list)) {
		pw_set_error("pw_post_send: bad opcode %d or num_sge %d (max %u)",
			     wr->opcode, wr->num_sge, qp->max_send_sge);
		return -EINVAL;
	}
	if (atomic && (wr->num_sge != 1 || wr->sg_list[0].length != 8)) {
		pw_set_error("pw_post_send: atomics take one 8-byte SGE");
		return -EINVAL;
	}
	if (inl) {
		uint64_t sum = 0;

		if (wr->opcode == PW_WR_RDMA_READ || atomic) {
			pw_set_error("pw_post_send: INLINE applies to WRITE and SEND only");
			return -EINVAL;
		}
		for (int i = 0; i < wr->num_sge; i++)
			sum += wr->sg_list[i].length;
		if (sum > qp->max_inline) {
			pw_set_error("pw_post_send: %lu inline bytes exceed max_inline_data %u",
				     (unsigned long)sum, qp->max_inline);
			return -EINVAL;
		}
	}
	return 0;
}

/* Copy one WR into its slot and check it locally (lkeys, bounds, length). */
static void fill_wqe(struct pw_qp_i *qp, struct pw_wqe *w,
		     const struct pw_send_wr *wr)
{
	uint64_t total = 0;

	w->wr_id = wr->wr_id;
	w->opcode = (uint8_t)wr->opcode;
	w->signaled = qp->sq_sig_all || (wr->send_flags & PW_SEND_SIGNALED);
	w->fence = wr->send_flags & PW_SEND_FENCE;
	w->solicited = wr->send_flags & PW_SEND_SOLICITED;
	w->inlined = wr->send_flags & PW_SEND_INLINE;
	w->nt_asked = false;
	w->imm = wr->imm_data;
	w->status = PW_WC_SUCCESS;
	w->num_sge = (uint8_t)wr->num_sge;
	if (w->opcode == PW_WR_ATOMIC_CMP_AND_SWP ||
	    w->opcode == PW_WR_ATOMIC_FETCH_AND_ADD) {
		w->raddr = wr->wr.atomic.remote_addr;
		w->rkey = wr->wr.atomic.rkey;
		w->compare_add = wr->wr.atomic.compare_add;
		w->swap = wr->wr.atomic.swap;
	} else {
		w->raddr = wr->wr.rdma.remote_addr;
		w->rkey = wr->wr.rdma.rkey;
		w->compare_add = w->swap = 0;
	}
	if (w->inlined) {
		/*
		 * The caller's own buffer, read in the caller's thread, as
		 * ibv_post_send does: no lkey, no safe copy needed.
		 */
		for (int i = 0; i < wr->num_sge; i++) {
			const struct pw_sge *s = &wr->sg_list[i];

			if (s->length)
				memcpy(w->inline_buf + total,
				       (void *)(uintptr_t)s->addr, s->length);
			total += s->length;
		}
		w->num_sge = 0;
	} else {
		if (wr->num_sge)
			memcpy(w->sge, wr->sg_list, sizeof(*w->sge) * (size_t)wr->num_sge);
		w->status = pw_qp_check_sges(qp, w->sge, w->num_sge,
					     pw_wqe_is_rd(w), &total);
		/* a receive may be larger than 2^31; a message may not */
		if (w->status == PW_WC_SUCCESS && total > PW_MAX_MSG_SIZE)
			w->status = PW_WC_LOC_LEN_ERR;
	}
	w->length = (uint32_t)PW_MIN(total, (uint64_t)PW_MAX_MSG_SIZE);
}

int pw_post_send(struct pw_qp *ibqp, struct pw_send_wr *wr,
		 struct pw_send_wr **bad_wr)
{
	struct pw_qp_i *qp;
	int ret = 0;

	if (!ibqp || !wr)
		return -EINVAL;
	qp = to_qp(ibqp);
	if (pw_qp_get_state(qp) == PW_QPS_INIT) {
		pw_set_error("pw_post_send: the QP is not connected yet");
		if (bad_wr)
			*bad_wr = wr;
		return -EINVAL;
	}
	pthread_mutex_lock(&qp->lock);
	for (; wr; wr = wr->next) {
		struct pw_wqe *w;

		ret = check_send_wr(qp, wr);
		if (ret)
			break;
		/*
		 * In error: flushed at once, or (completion order) behind the
		 * WQEs a drain still holds, which it flushes at its end.
		 */
		if (pw_qp_get_state(qp) == PW_QPS_ERR && !qp->drain) {
			struct pw_wqe tmp = { .wr_id = wr->wr_id,
					      .opcode = (uint8_t)wr->opcode,
					      .signaled = true };

			pw_qp_complete_send_locked(qp, &tmp, PW_WC_WR_FLUSH_ERR);
			continue;
		}
		if (qp->sq_tail - qp->sq_head >= qp->sq_max) {
			pw_set_error("pw_post_send: send queue full (%u WRs)", qp->sq_max);
			ret = -ENOMEM;
			break;
		}
		/* the peer's silence counts from here (live.c) */
		if (qp->sq_head == qp->sq_tail)
			qp->lv.wait_ns = pw_coarse_ns();
		w = pw_sq_at(qp, qp->sq_tail);
		fill_wqe(qp, w, wr);
		w->psn = qp->next_psn++;
		qp->sq_tail++;
	}
	if (ret && bad_wr)
		*bad_wr = wr;
	/*
	 * Doorbell: transmit now from this thread, no hand-off. When the socket
	 * is known full (EPOLLOUT armed) the engine's EPOLLOUT sends instead:
	 * retrying here would only push the few KiB freed so far (many small
	 * sendmsg calls per large message, and lock ping-pong with the engine),
	 * while the kernel signals EPOLLOUT once half the send buffer is free.
	 */
	if (!atomic_load_explicit(&qp->want_out, memory_order_relaxed))
		pw_tx_flush_locked(qp);
	pthread_mutex_unlock(&qp->lock);
	return ret;
}

int pw_post_recv(struct pw_qp *ibqp, struct pw_recv_wr *wr,
		 struct pw_recv_wr **bad_wr)
{
	struct pw_qp_i *qp;
	int ret = 0;

	if (!ibqp || !wr)
		return -EINVAL;
	qp = to_qp(ibqp);
	pthread_mutex_lock(&qp->lock);
	for (; wr; wr = wr->next) {
		struct pw_rqe *r;

		if (wr->num_sge < 0 || (uint32_t)wr->num_sge > qp->max_recv_sge ||
		    (wr->num_sge && !wr->sg_list)) {
			pw_set_error("pw_post_recv: num_sge %d (max %u)",
				     wr->num_sge, qp->max_recv_sge);
			ret = -EINVAL;
			break;
		}
		if (pw_qp_get_state(qp) == PW_QPS_ERR) {
			struct pw_rqe tmp = { .wr_id = wr->wr_id };

			pw_qp_complete_recv_locked(qp, &tmp, PW_WC_WR_FLUSH_ERR, 0, NULL);
			continue;
		}
		if (qp->rq_tail - qp->rq_head >= qp->rq_max) {
			pw_set_error("pw_post_recv: receive queue full (%u WRs)", qp->rq_max);
			ret = -ENOMEM;
			break;
		}
		r = pw_rq_at(qp, qp->rq_tail);
		r->wr_id = wr->wr_id;
		r->num_sge = (uint32_t)wr->num_sge;
		if (wr->num_sge)
			memcpy(r->sge, wr->sg_list, sizeof(*r->sge) * (size_t)wr->num_sge);
		qp->rq_tail++;
	}
	if (ret && bad_wr)
		*bad_wr = wr;
	pthread_mutex_unlock(&qp->lock);
	return ret;
}

/*
 * Give the last owed messages (a coalesced ACK, a fatal NAK) a bounded
 * chance to leave when the socket is full, so that a graceful destroy does
 * not turn the peer's executed requests into errors.
 */
static void drain_owed(struct pw_qp_i *qp)
{
	uint64_t deadline = pw_now_ns() + 1000000000ull;

	if (!pw_cm_live(&qp->cm))
		return;		/* never connected: nothing is owed */
	pthread_mutex_lock(&qp->lock);
	while (!qp->shut_wr && pw_now_ns() < deadline) {
		struct pollfd p = { .fd = qp->fd, .events = POLLOUT };

		pthread_mutex_unlock(&qp->lock);
		if (poll(&p, 1, 10) < 0 && errno != EINTR)
			return;
		pthread_mutex_lock(&qp->lock);
		pw_tx_flush_locked(qp);
	}
	pthread_mutex_unlock(&qp->lock);
}

/*
 * The application ends the connection: the peer is told (DISCONNECT,
 * after the ACK it is owed), every outstanding WR is flushed, and no
 * QP_FATAL event is raised for it (the application knows why).
 */
static void disconnect(struct pw_qp_i *qp)
{
	pthread_mutex_lock(&qp->lock);
	if (pw_qp_get_state(qp) != PW_QPS_ERR)
		pw_live_disconnect_locked(qp);
	pw_qp_fail_locked(qp, PW_QP_CAUSE_NONE, PW_WC_WR_FLUSH_ERR);
	pw_tx_flush_locked(qp);
	pthread_mutex_unlock(&qp->lock);
}

int pw_disconnect(struct pw_qp *ibqp)
{
	if (!ibqp)
		return -EINVAL;
	disconnect(to_qp(ibqp));
	return 0;
}

int pw_destroy_qp(struct pw_qp *ibqp)
{
	struct pw_qp_i *qp;

	if (!ibqp)
		return -EINVAL;
	qp = to_qp(ibqp);
	disconnect(qp);
	drain_owed(qp);
	/* after this the progress thread never touches the QP again */
	pw_engine_del_qp(&qp->ctx->engine, qp);
	/* nor the fault engine (a STALL fault may still be in its hands) */
	pw_fault_cancel(&qp->ctx->faults, &qp->fault);
	pw_fault_cancel(&qp->ctx->faults, &qp->req_fault);
	pw_fault_cancel(&qp->ctx->faults, &qp->drop_fault);
	for (int i = 0; i < PW_NT_BATCH; i++)
		pw_fault_cancel(&qp->ctx->faults, &qp->nt_fault[i].f);
	/* nobody posts its events any more: drop queued ones, wait for acks */
	pw_async_forget_qp(qp->ctx, &qp->ibqp);
	pw_cm_qp_gone(qp);
	pw_notify_qp_gone(qp);
	shutdown(qp->fd, SHUT_RDWR);
	pw_qp_free(qp);
	return 0;
}

enum pw_qp_state pw_qp_state(const struct pw_qp *ibqp)
{
	return (enum pw_qp_state)pw_qp_get_state(to_qp((struct pw_qp *)ibqp));
}

int pw_query_qp(struct pw_qp *ibqp, struct pw_qp_attr *attr, size_t size)
{
	struct pw_qp_attr a;
	struct pw_qp_i *qp;

	if (!ibqp || !attr || !size)
		return -EINVAL;
	qp = to_qp(ibqp);
	memset(&a, 0, sizeof(a));
	pthread_mutex_lock(&qp->lock);
	a.qp_state = (enum pw_qp_state)pw_qp_get_state(qp);
	a.cause = a.qp_state == PW_QPS_ERR ? qp->err_cause : PW_QP_CAUSE_NONE;
	a.qp_num = ibqp->qp_num;
	a.dest_qp_num = ibqp->dest_qp_num;
	a.cap.max_send_wr = qp->sq_max;
	a.cap.max_recv_wr = qp->rq_max;
	a.cap.max_send_sge = qp->max_send_sge;
	a.cap.max_recv_sge = qp->max_recv_sge;
	a.cap.max_inline_data = qp->max_inline;
	a.max_rd_atomic = qp->rd_max;
	a.max_dest_rd_atomic = qp->dest_rd_max;
	a.rnr_retry = qp->rnr_retry ? qp->rnr_retry : 7;	/* 0: the default, 7 */
	a.retry_cnt = qp->retry_cnt;
	a.min_rnr_timer_us = qp->min_rnr_timer_us;
	/* what the responder really does: DROP and NOTIFY need the peer's word */
	a.fault_policy = qp->fault_policy;
	if ((a.fault_policy == PW_FAULT_DROP && !(qp->features & PW_WIRE_FEAT_FAULT_NAK)) ||
	    (a.fault_policy == PW_FAULT_NOTIFY && !(qp->features & PW_WIRE_FEAT_NOTIFY)))
		a.fault_policy = PW_FAULT_STALL;
	a.peer_timeout_ms = qp->peer_timeout_ms;
	a.features = (qp->features & PW_WIRE_FEAT_FAULT_NAK ? PW_QP_FEATURE_FAULT_NAK : 0) |
		     (qp->features & PW_WIRE_FEAT_NOTIFY ? PW_QP_FEATURE_NOTIFY : 0) |
		     (qp->features & PW_WIRE_FEAT_LINK ? PW_QP_FEATURE_LINK : 0);
	a.local_addr = qp->cm.local;
	a.peer_addr = qp->cm.remote;
	pthread_mutex_unlock(&qp->lock);
	memcpy(attr, &a, PW_MIN(size, sizeof(a)));
	return 0;
}
