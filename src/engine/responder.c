/* SPDX-License-Identifier: MIT */
/*
 * Responder: executes incoming requests. Every op is checked, every time,
 * before any byte of memory is touched (docs/security.md, "The checks, on
 * every request"):
 * the key names a live MR, the MR is in the QP's PD, it grants the access,
 * and the range lies inside it. A failure NAKs with REMOTE_ACCESS and, as
 * IBA prescribes for responder access errors, puts the QP in error.
 *
 * Sequence: requests must arrive with consecutive PSNs. After an RNR NAK
 * for PSN P the responder drops everything until P is sent again (the
 * requester goes back to P: go-back-N keeps RC ordering).
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "core/context.h"
#include "engine/qp.h"
#include "mr/mr.h"
#include "paging/notifier.h"
#include "paging/pt.h"

/*
 * Atomics are PW_ATOMIC_HCA: atomic with respect to every other pagewire
 * atomic in this process (all contexts), as IBV_ATOMIC_HCA. The
 * read-modify-write goes through EFAULT-safe copies, so a target page
 * unmapped under us is an access error, never a SIGSEGV.
 */
static pthread_mutex_t pw_atomic_lock = PTHREAD_MUTEX_INITIALIZER;

bool pw_resp_push_locked(struct pw_qp_i *qp, const struct pw_resp *r)
{
	if (qp->resp_count == qp->resp_cap)
		return false;
	qp->resp[(qp->resp_head + qp->resp_count) % qp->resp_cap] = *r;
	qp->resp_count++;
	/* a NAK or READ/ATOMIC response acknowledges everything before it */
	qp->ack_pending = false;
	qp->ack_now = false;
	qp->unacked = 0;
	return true;
}

/* Build the next response (queued responses first, then the ACK). */
bool pw_resp_next_locked(struct pw_qp_i *qp)
{
	struct pw_tx *tx = &qp->tx;
	struct pw_hdr h = { 0 };

	tx->data_left = 0;
	tx->ndata = 0;
	tx->trailer_len = 0;
	tx->resp_is_rd = false;
	if (qp->resp_count) {
		struct pw_resp *r = &qp->resp[qp->resp_head];

		qp->resp_head = (qp->resp_head + 1) % qp->resp_cap;
		qp->resp_count--;
		h.opcode = r->op;
		h.psn = r->psn;
		switch (r->op) {
		case PW_OP_NAK:
			h.syndrome = r->syndrome;
			h.retry_us = r->val;
			break;
		case PW_OP_ATOMIC_RESP:
			h.orig = r->val;
			tx->resp_is_rd = true;
			break;
		case PW_OP_READ_RESP:
			h.payload_len = r->len + PW_WIRE_READ_TRAILER_LEN;
			tx->data[0].base = (void *)(uintptr_t)r->addr;
			tx->data[0].len = r->len;
			tx->data[0].key = r->rkey;
			tx->ndata = r->len ? 1 : 0;
			tx->data_left = r->len;
			tx->trailer_len = PW_WIRE_READ_TRAILER_LEN;
			tx->resp_is_rd = true;
			break;
		}
	} else if (qp->ack_pending &&
		   (qp->ack_now || pw_qp_get_state(qp) == PW_QPS_ERR)) {
		qp->ack_pending = false;
		qp->ack_now = false;
		qp->unacked = 0;
		h.opcode = PW_OP_ACK;
		h.psn = qp->ack_psn;
	} else {
		return false;
	}
	pw_tx_start_locked(qp, TX_RESP, &h);
	tx->syndrome = PW_SYN_OK;
	return true;
}

/* Check (key, PD, access, bounds) for a remote access. Return a syndrome. */
static uint32_t check_remote(struct pw_qp_i *qp, uint32_t rkey, uint64_t addr,
			     uint64_t len, unsigned int access)
{
	struct pw_mr_i *mr = pw_mr_get(&qp->ctx->keys, rkey);
	uint32_t syn = PW_SYN_OK;

	if (!mr)
		return PW_SYN_REMOTE_ACCESS;
	if (mr->ibmr.pd != qp->ibqp.pd || !(mr->ibmr.access & access) ||
	    !pw_mr_covers(mr, addr, len))
		syn = PW_SYN_REMOTE_ACCESS;
	else if (qp->nt.send_inval)
		pw_notify_key_used_locked(qp, rkey);
	pw_mr_put(mr);
	return syn;
}

/*
 * Is [a, a + l) of the MR with key @key missing from its page table? An
 * MR without one (pinned), or gone (placement reports that), never is.
 * @residency: also check that valid pages are resident (large ranges);
 * the receive side passes false right after a fault round for the op
 * (rx-only qp->skip_residency), the send side keeps its own round count.
 * On a miss, *f gets the part from the first missing page on.
 */
bool pw_qp_range_miss(struct pw_qp_i *qp, uint32_t key, uint64_t a,
		      uint64_t l, bool write, bool residency, struct pw_fault *f)
{
	struct pw_mr_i *mr;
	uint64_t m;
	bool hit = false;

	if (!l)
		return false;
	mr = pw_mr_get(&qp->ctx->keys, key);
	if (!mr)
		return false;
	if (mr->pt && pw_mr_covers(mr, a, l) &&
	    (!pw_pt_lookup(mr->pt, a, l, write, &m) ||
	     (l >= PW_RESIDENCY_MIN && residency &&
	      pw_fault_nonresident(a, l, &m)))) {
		/* the first missing page may start before the range */
		if (m < a)
			m = a;
		/* past the 57-bit user space nothing can be mapped: placement fails */
		if (m >> PW_PT_VA_BITS) {
			pw_mr_put(mr);
			return false;
		}
		f->key = key;
		f->addr = m;
		f->len = a + l - m;
		f->write = write;
		hit = true;
	}
	pw_mr_put(mr);
	return hit;
}

/*
 * The first range the current request still needs that is not in its ODP
 * MR's page table: the target range of a WRITE, READ or atomic, the rest
 * of the receive buffers a SEND fills, or (completer) the rest of a READ's
 * sink its response fills, from where placement stands. Filled into @f;
 * *@off gets the payload offset of its first byte (0 for a READ or an
 * atomic, which touch memory only once it is all there).
 */
static bool resp_find_miss(struct pw_qp_i *qp, struct pw_fault *f,
			   uint64_t *off)
{
	struct pw_rx *rx = &qp->rx;
	const struct pw_hdr *h = &rx->hdr;
	uint64_t need = rx->left, pos = rx->done;

	*off = 0;
	switch (h->opcode) {
	case PW_OP_READ_REQ:
		return pw_qp_range_miss(qp, h->rkey, h->raddr, h->read_len, false,
					!qp->skip_residency, f);
	case PW_OP_ATOMIC_CS:
	case PW_OP_ATOMIC_FA:
		return pw_qp_range_miss(qp, h->rkey, h->raddr, 8, true,
					!qp->skip_residency, f);
	default:
		if (rx->dst != DST_PLACE)
			return false;
		for (int i = rx->iov_idx; i < rx->niov && need; i++) {
			size_t skip = i == rx->iov_idx ? rx->iov_off : 0;
			uint64_t a = (uint64_t)(uintptr_t)rx->iov[i].base + skip;
			uint64_t l = PW_MIN((uint64_t)rx->iov[i].len - skip, need);

			if (pw_qp_range_miss(qp, rx->iov[i].key, a, l, true,
					     !qp->skip_residency, f)) {
				*off = pos + (f->addr - a);
				return true;
			}
			need -= l;
			pos += l;
		}
		return false;
	}
}

static void resp_fault_done(struct pw_fault *f);

/* A response (READ_RESP into a local sink) rather than a request. */
static bool rx_is_response(const struct pw_qp_i *qp)
{
	return pw_wire_ops[qp->rx.hdr.opcode].cls == PW_WC_CLASS_RESPONSE;
}

/* DROP: the background fault is done; the resent request will find out. */
static void drop_fault_done(struct pw_fault *f)
{
	struct pw_qp_i *qp = container_of(f, struct pw_qp_i, drop_fault);

	qp->drop_pending = false;
	if (!qp->in_engine)
		return;
	if (f->err) {
		qp->drop_fail_key = f->key;
		qp->drop_fail_addr = f->addr;
	}
}

/*
 * DROP (the other answer of the 2008 thread, docs/design.md): read and
 * discard the request's payload, NAK it with PAGE_FAULT and a retry-after
 * hint, and fault the pages in the background, so that the resent request
 * finds them valid. Everything the requester sent after it is dropped too
 * until the resend arrives (go-back-N keeps RC ordering). Called with the
 * lock held; @f holds the missing range. Return true when the request was
 * NAKed.
 */
static bool resp_drop_locked(struct pw_qp_i *qp, const struct pw_fault *miss)
{
	struct pw_fault *f = &qp->drop_fault;
	struct pw_rx *rx = &qp->rx;
	struct pw_fault_stats *st = &qp->ctx->faults.stats;
	uint64_t us = PW_MIN(20 + miss->len / 4096, (uint64_t)10000);
	struct pw_resp r = { .op = PW_OP_NAK, .psn = rx->hdr.psn,
			     .syndrome = PW_SYN_PAGE_FAULT, .val = us };

	if (qp->drop_fail_key == miss->key && qp->drop_fail_addr == miss->addr) {
		/* it was faulted in the background and nothing is mapped */
		bool to_recv = rx->hdr.opcode == PW_OP_SEND ||
			       rx->hdr.opcode == PW_OP_SEND_IMM;

		qp->drop_fail_key = 0;
		rx->err_syn = to_recv ? PW_SYN_REMOTE_OP : PW_SYN_REMOTE_ACCESS;
		if (to_recv)
			rx->recv_status = PW_WC_LOC_PROT_ERR;
		rx->dst = DST_DISCARD;
		return false;
	}
	/* a record for another range is stale: that fault's op has moved on */
	qp->drop_fail_key = 0;
	if (!pw_resp_push_locked(qp, &r)) {
		pw_qp_fatal_nak_locked(qp, r.psn, PW_SYN_INVALID_REQ,
				       PW_QP_CAUSE_PROTOCOL, PW_WC_FATAL_ERR);
		return true;
	}
	qp->nak_drop = true;
	rx->skip = true;
	rx->dst = DST_DISCARD;
	atomic_fetch_add_explicit(&st->naks_sent, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&st->dropped_bytes, rx->hdr.payload_len,
				  memory_order_relaxed);
	/* one background fault at a time; a resend during it is NAKed again */
	if (!qp->drop_pending) {
		f->key = miss->key;
		f->addr = miss->addr;
		f->len = miss->len;
		f->write = miss->write;
		f->done = drop_fault_done;
		qp->drop_pending = true;
		pw_fault_submit(&qp->ctx->faults, f);
	}
	return true;
}

/*
 * STALL (the 2008 thread: "the target must either stall or drop"): when
 * the current request needs pages its ODP MR's page table lacks, only this
 * QP pauses.
 * Its socket is not read until the fault engine has them, so TCP
 * backpressure holds the sender; the data then goes straight into the
 * populated pages, and a READ response or atomic runs on valid pages.
 * Return true when the QP stalled. Called with the lock held.
 */
bool pw_qp_fault_check_locked(struct pw_qp_i *qp)
{
	struct pw_fault *f = &qp->fault;
	struct pw_rx *rx = &qp->rx;
	struct pw_fault miss;
	uint64_t off;
	bool placing;

	rx->place_ok = UINT64_MAX;
	if (rx->err_syn || rx->skip)
		return false;
	if (qp->fault_busy) {
		/* the QP's one fault is still out (an op that ended early) */
		rx->place_ok = rx->done;
		goto stall;
	}
	/*
	 * Small faults that cannot need I/O are resolved on the spot (the
	 * op's ranges in order: a SEND may span several buffers).
	 */
	for (int i = 0;; i++) {
		if (!resp_find_miss(qp, &miss, &off))
			return false;
		if (i > PW_MAX_SGE || !pw_fault_try_inline(&qp->ctx->faults, &miss))
			break;
	}
	/*
	 * DROP needs a peer that understands PAGE_FAULT; else STALL. A
	 * response cannot be NAKed: a READ sink always stalls.
	 */
	if (qp->fault_policy == PW_FAULT_DROP && !rx_is_response(qp) &&
	    (qp->features & PW_WIRE_FEAT_FAULT_NAK)) {
		resp_drop_locked(qp, &miss);
		return false;
	}
	/*
	 * Data that is placed as it arrives (WRITE, SEND, a READ sink) is
	 * faulted a step at a time, and what is valid is placed while the
	 * worker populates the next step: placement and population overlap
	 * instead of taking turns (the page population itself is the
	 * bound of a first-touch stream: docs/performance.md).
	 */
	placing = rx->dst == DST_PLACE && rx->hdr.opcode != PW_OP_READ_REQ &&
		  rx->hdr.opcode != PW_OP_ATOMIC_CS &&
		  rx->hdr.opcode != PW_OP_ATOMIC_FA;
	f->key = miss.key;
	f->addr = miss.addr;
	f->len = placing ? PW_MIN(miss.len, (uint64_t)PW_FAULT_STEP) : miss.len;
	f->write = miss.write;
	f->done = resp_fault_done;
	qp->fault_busy = true;
	qp->fault_msg = rx->msg_seq;
	pw_fault_submit(&qp->ctx->faults, f);
	rx->place_ok = placing ? off : rx->done;
	if (rx->place_ok > rx->done)
		return false;
stall:
	if (!qp->rx_stalled)
		qp->stall_start_ns = pw_now_ns();
	pw_qp_set_stall_locked(qp, true);
	return true;
}

/*
 * Placement reached rx->place_ok (progress thread): wait for the step the
 * worker is populating, or find the next one. Return true when stalled.
 */
bool pw_qp_place_wait(struct pw_qp_i *qp)
{
	bool stalled;

	pthread_mutex_lock(&qp->lock);
	stalled = pw_qp_fault_check_locked(qp);
	pthread_mutex_unlock(&qp->lock);
	return stalled;
}

/*
 * The fault engine is done with this QP's fault (token holder). Resume
 * where the stall began, after faulting the next range the op needs, if
 * any (a SEND may span several receive buffers); a fault that found no
 * mapping is a remote access error for the op, as an unmapped page
 * always was.
 */
static void resp_fault_done(struct pw_fault *f)
{
	struct pw_qp_i *qp = container_of(f, struct pw_qp_i, fault);
	struct pw_rx *rx = &qp->rx;
	bool to_recv = rx->hdr.opcode == PW_OP_SEND ||
		       rx->hdr.opcode == PW_OP_SEND_IMM;

	if (!qp->in_engine)
		return;		/* destroyed meanwhile: pw_destroy_qp cancels */
	pthread_mutex_lock(&qp->lock);
	qp->fault_busy = false;
	rx->place_ok = UINT64_MAX;
	if (qp->fault_msg != rx->msg_seq || rx->state != RX_DATA) {
		/*
		 * Its message ended early (discarded: MR gone, QP error)
		 * while the step was out; a message that began meanwhile
		 * waited for it and now looks for its own pages.
		 */
		if (rx->state != RX_DATA || !pw_qp_fault_check_locked(qp))
			goto resume;
		pthread_mutex_unlock(&qp->lock);
		return;
	} else if (f->err && rx_is_response(qp)) {
		/* a READ sink with no mapping: the completer's fault path */
		rx->fault = true;
		rx->dst = DST_DISCARD;
	} else if (f->err) {
		/* as a fault while placing (pw_resp_finish) */
		rx->err_syn = to_recv ? PW_SYN_REMOTE_OP : PW_SYN_REMOTE_ACCESS;
		if (to_recv)
			rx->recv_status = PW_WC_LOC_PROT_ERR;
		rx->dst = DST_DISCARD;
	} else {
		/*
		 * The worker populated the range: pages it could not make
		 * resident (VM_IO, a kernel without MADV_POPULATE_*) must
		 * not send the op round again.
		 */
		qp->skip_residency = true;
		if (pw_qp_fault_check_locked(qp)) {
			pthread_mutex_unlock(&qp->lock);
			return;
		}
	}
resume:
	if (!qp->rx_stalled) {
		/* a step finished while the valid part was still being placed */
		pthread_mutex_unlock(&qp->lock);
		return;
	}
	pw_qp_set_stall_locked(qp, false);
	atomic_fetch_add_explicit(&qp->ctx->faults.stats.stall_ns,
				  pw_now_ns() - qp->stall_start_ns,
				  memory_order_relaxed);
	pthread_mutex_unlock(&qp->lock);
	/* an error or hang-up while stalled took the socket off epoll */
	pw_engine_rewatch(&qp->ctx->engine, qp);
	pw_rx_process(qp);
}

static void rnr_nak(struct pw_qp_i *qp)
{
	struct pw_resp r = { .op = PW_OP_NAK, .psn = qp->rx.hdr.psn,
			     .syndrome = PW_SYN_RNR,
			     .val = qp->min_rnr_timer_us };

	if (!pw_resp_push_locked(qp, &r)) {
		pw_qp_fatal_nak_locked(qp, r.psn, PW_SYN_INVALID_REQ,
				       PW_QP_CAUSE_PROTOCOL, PW_WC_FATAL_ERR);
		return;
	}
	qp->nak_drop = true;
	qp->rx.skip = true;
}

/* Responder work at a request header: checks, and where the data goes. */
void pw_resp_begin(struct pw_qp_i *qp)
{
	struct pw_rx *rx = &qp->rx;
	struct pw_hdr *h = &rx->hdr;
	struct pw_rqe *r;
	uint64_t total;

	rx->skip = false;
	rx->err_syn = PW_SYN_OK;
	rx->recv_status = PW_WC_SUCCESS;
	rx->dst = DST_DISCARD;
	qp->skip_residency = false;

	/*
	 * In error, requests are dropped unread, whatever their PSN (after
	 * a refusal the stream is still read for the ACKs the peer owes).
	 */
	if (pw_qp_get_state(qp) == PW_QPS_ERR) {
		rx->skip = true;
		return;
	}
	if (qp->nak_drop) {
		if (h->psn != qp->exp_psn) {
			rx->skip = true;	/* sent before our NAK arrived */
			atomic_fetch_add_explicit(&qp->ctx->faults.stats.dropped_bytes,
						  h->payload_len,
						  memory_order_relaxed);
			return;
		}
		qp->nak_drop = false;
	} else if (h->psn != qp->exp_psn) {
		pthread_mutex_lock(&qp->lock);
		pw_qp_fatal_nak_locked(qp, qp->exp_psn, PW_SYN_PSN_SEQ,
				       PW_QP_CAUSE_PROTOCOL, PW_WC_FATAL_ERR);
		rx->dead = true;
		pthread_mutex_unlock(&qp->lock);
		rx->skip = true;
		return;
	}

	pthread_mutex_lock(&qp->lock);
	if (pw_qp_get_state(qp) == PW_QPS_ERR) {
		rx->skip = true;
		goto out;
	}
	switch (h->opcode) {
	case PW_OP_WRITE_IMM:
		if (qp->rq_head == qp->rq_tail) {
			rnr_nak(qp);
			break;
		}
		/* fall through */
	case PW_OP_WRITE:
		/* IBA: a zero-length RDMA op does not validate the R_Key */
		if (!h->payload_len)
			break;
		rx->err_syn = check_remote(qp, h->rkey, h->raddr, h->payload_len,
					   PW_ACCESS_REMOTE_WRITE);
		if (!rx->err_syn) {
			rx->dst = DST_PLACE;
			rx->iov[0].base = (void *)(uintptr_t)h->raddr;
			rx->iov[0].len = h->payload_len;
			rx->iov[0].key = h->rkey;
			rx->niov = 1;
			rx->iov_idx = 0;
			rx->iov_off = 0;
			/* the first missing page may start before the op */
		}
		break;
	case PW_OP_SEND:
	case PW_OP_SEND_IMM:
		if (qp->rq_head == qp->rq_tail) {
			rnr_nak(qp);
			break;
		}
		r = pw_rq_at(qp, qp->rq_head);
		rx->recv_status = pw_qp_check_sges(qp, r->sge, (int)r->num_sge,
						   true, &total);
		if (rx->recv_status != PW_WC_SUCCESS) {
			/* IBA: the receive WQE's fault is a remote operational error */
			rx->recv_status = PW_WC_LOC_PROT_ERR;
			rx->err_syn = PW_SYN_REMOTE_OP;
			break;
		}
		if (h->payload_len > total) {
			rx->recv_status = PW_WC_LOC_LEN_ERR;
			rx->err_syn = PW_SYN_INVALID_REQ;
			break;
		}
		pw_rx_set_sges(rx, r->sge, (int)r->num_sge);
		break;
	case PW_OP_READ_REQ:
		/* IBA C9-92: more than the credits we granted is an invalid request */
		if (qp->rd_in >= qp->dest_rd_max) {
			atomic_fetch_add_explicit(&qp->ctx->rd_overrun, 1,
						  memory_order_relaxed);
			rx->err_syn = PW_SYN_INVALID_REQ;
			break;
		}
		if (h->read_len)
			rx->err_syn = check_remote(qp, h->rkey, h->raddr,
						   h->read_len,
						   PW_ACCESS_REMOTE_READ);
		break;
	case PW_OP_ATOMIC_CS:
	case PW_OP_ATOMIC_FA:
		if (qp->rd_in >= qp->dest_rd_max || (h->raddr & 7)) {
			if (qp->rd_in >= qp->dest_rd_max)
				atomic_fetch_add_explicit(&qp->ctx->rd_overrun, 1,
							  memory_order_relaxed);
			rx->err_syn = PW_SYN_INVALID_REQ;
			break;
		}
		rx->err_syn = check_remote(qp, h->rkey, h->raddr, 8,
					   PW_ACCESS_REMOTE_ATOMIC);
		break;
	}
	/* an ODP target or receive buffer not in its page table: STALL */
	pw_qp_fault_check_locked(qp);
out:
	pthread_mutex_unlock(&qp->lock);
}

/* Execute an atomic. Return the syndrome; *orig gets the old value. */
static uint32_t do_atomic(struct pw_qp_i *qp, const struct pw_hdr *h,
			  uint64_t *orig)
{
	struct pw_mr_i *mr = pw_mr_get(&qp->ctx->keys, h->rkey);
	uint32_t syn = PW_SYN_REMOTE_ACCESS;
	void *p = (void *)(uintptr_t)h->raddr;
	uint64_t v, nv;

	if (!mr)
		return syn;
	/* the notifier's fence; then the range must still be alive */
	pw_notify_enter();
	if (!pw_mr_covers(mr, h->raddr, 8)) {
		pw_notify_exit();
		pw_mr_put(mr);
		return syn;
	}
	pthread_mutex_lock(&pw_atomic_lock);
	if (pw_safe_read(&v, p, 8) == 8) {
		if (h->opcode == PW_OP_ATOMIC_FA)
			nv = v + h->compare_add;
		else
			nv = v == h->compare_add ? h->swap : v;
		if (nv == v || pw_safe_write(p, &nv, 8) == 8) {
			*orig = v;
			syn = PW_SYN_OK;
		}
	}
	pthread_mutex_unlock(&pw_atomic_lock);
	pw_notify_exit();
	pw_mr_put(mr);
	return syn;
}

/* Responder work once the whole request (payload included) has arrived. */
void pw_resp_finish(struct pw_qp_i *qp)
{
	struct pw_rx *rx = &qp->rx;
	struct pw_hdr *h = &rx->hdr;
	struct pw_resp resp = { .psn = h->psn };
	uint32_t syn = rx->err_syn;
	uint64_t orig = 0;

	if (rx->skip)
		return;
	/*
	 * A fault while placing: into the target MR is a remote access error;
	 * into a posted receive's buffer (SEND), the receive completes with a
	 * local protection error and the sender gets a remote operational one.
	 */
	if (rx->fault && !syn) {
		bool to_recv = h->opcode == PW_OP_SEND || h->opcode == PW_OP_SEND_IMM;

		syn = to_recv ? PW_SYN_REMOTE_OP : PW_SYN_REMOTE_ACCESS;
		if (to_recv)
			rx->recv_status = PW_WC_LOC_PROT_ERR;
	}
	if (!syn && (h->opcode == PW_OP_ATOMIC_CS || h->opcode == PW_OP_ATOMIC_FA))
		syn = do_atomic(qp, h, &orig);

	pthread_mutex_lock(&qp->lock);
	if (pw_qp_get_state(qp) == PW_QPS_ERR)
		goto out;
	if (syn) {
		if (rx->recv_status != PW_WC_SUCCESS) {
			pw_qp_complete_recv_locked(qp, pw_rq_at(qp, qp->rq_head),
						   rx->recv_status, 0, h);
			qp->rq_head++;
		}
		/*
		 * Refused (IBA: NAK, and the responder QP to error). The rest
		 * of the stream is still read: the peer's later requests are
		 * dropped (error state), its ACKs for our own requests are
		 * what the drain waits for.
		 */
		pw_qp_refuse_locked(qp, h->psn, syn);
		goto out;
	}
	qp->exp_psn++;
	switch (h->opcode) {
	case PW_OP_WRITE_IMM:
	case PW_OP_SEND:
	case PW_OP_SEND_IMM:
		pw_qp_complete_recv_locked(qp, pw_rq_at(qp, qp->rq_head),
					   PW_WC_SUCCESS, h->payload_len, h);
		qp->rq_head++;
		/* fall through */
	case PW_OP_WRITE:
		/* coalesced: one ACK covers them all (PW_ACK_COALESCE) */
		if (!qp->ack_pending)
			qp->ack_at_ns = pw_now_ns() + PW_ACK_DELAY_NS;
		qp->ack_pending = true;
		qp->ack_psn = h->psn;
		if ((h->flags & PW_WF_ACK_REQ) || ++qp->unacked >= PW_ACK_COALESCE)
			qp->ack_now = true;
		break;
	case PW_OP_READ_REQ:
		resp.op = PW_OP_READ_RESP;
		resp.rkey = h->rkey;
		resp.addr = h->raddr;
		resp.len = h->read_len;
		goto push;
	case PW_OP_ATOMIC_CS:
	case PW_OP_ATOMIC_FA:
		resp.op = PW_OP_ATOMIC_RESP;
		resp.val = orig;
push:
		if (!pw_resp_push_locked(qp, &resp)) {
			pw_qp_fatal_nak_locked(qp, h->psn, PW_SYN_INVALID_REQ,
					       PW_QP_CAUSE_PROTOCOL, PW_WC_FATAL_ERR);
			rx->dead = true;
			break;
		}
		qp->rd_in++;
		break;
	}
out:
	pthread_mutex_unlock(&qp->lock);
}
