/* SPDX-License-Identifier: MIT */
/*
 * The notification protocol (notify.h; docs/wire.md section 14).
 */
#include <string.h>

#include "core/context.h"
#include "engine/qp.h"
#include "mr/mr.h"
#include "notify/notify.h"

void pw_nring_init(struct pw_nring *r)
{
	pthread_mutex_init(&r->lock, NULL);
}

void pw_nring_fini(struct pw_nring *r)
{
	pthread_mutex_destroy(&r->lock);
}

static bool touch_or_adjacent(uint64_t s1, uint64_t e1, uint64_t s2, uint64_t e2)
{
	return s1 <= e2 && s2 <= e1;
}

/* ------------------------------------------------------------------ */
/* target: invalidations -> INVALIDATE                                  */
/* ------------------------------------------------------------------ */

void pw_notify_invalidated(struct pw_mr_i *mr, uint64_t a, uint64_t b)
{
	struct pw_context *ctx = mr->ibmr.context;
	struct pw_nring *r = &ctx->nring;
	uint64_t gen;
	unsigned int i;

	/* every invalidation moves the generation, told or not */
	gen = atomic_fetch_add_explicit(&mr->ngen, 1, memory_order_acq_rel) + 1;
	if (a >= b || !atomic_load_explicit(&r->senders, memory_order_acquire))
		return;
	pthread_mutex_lock(&r->lock);
	/* coalesce: a queued range of the same key that touches this one */
	for (i = 0; i < r->n; i++) {
		struct pw_ninv *e = &r->e[i];

		if (e->rkey == mr->ibmr.rkey && e->pd == mr->ibmr.pd &&
		    touch_or_adjacent(e->start, e->end, a, b)) {
			e->start = PW_MIN(e->start, a);
			e->end = PW_MAX(e->end, b);
			e->gen = gen;
			break;
		}
	}
	if (i == r->n) {
		if (r->n < PW_NRING_MAX) {
			r->e[r->n++] = (struct pw_ninv){ .pd = mr->ibmr.pd,
				.rkey = mr->ibmr.rkey, .start = a, .end = b,
				.gen = gen };
		} else {
			/* a storm: the last slot widens to the whole MR, or drops */
			struct pw_ninv *e = &r->e[PW_NRING_MAX - 1];

			if (e->rkey == mr->ibmr.rkey && e->pd == mr->ibmr.pd) {
				e->start = mr->start;
				e->end = mr->end;
				e->gen = gen;
			} else {
				atomic_fetch_add_explicit(&r->dropped, 1,
							  memory_order_relaxed);
			}
		}
	}
	atomic_store_explicit(&r->pending, true, memory_order_release);
	pthread_mutex_unlock(&r->lock);
	pw_engine_kick(&ctx->engine);
}

/* Queue INVALIDATE on @qp, merged with a queued one of the same key. */
static void ntq_invalidate_locked(struct pw_qp_i *qp, const struct pw_ninv *v)
{
	struct pw_qp_notify *nt = &qp->nt;
	unsigned int ninval = 0;

	for (unsigned int k = 0; k < nt->qcount; k++) {
		struct pw_nmsg *m = &nt->q[(nt->qhead + k) % PW_NTQ_MAX];
		uint64_t end;

		if (m->op != PW_OP_INVALIDATE)
			continue;
		ninval++;
		end = m->start + m->len;
		if (m->rkey == v->rkey &&
		    touch_or_adjacent(m->start, end, v->start, v->end)) {
			m->start = PW_MIN(m->start, v->start);
			m->len = PW_MAX(end, v->end) - m->start;
			m->gen = PW_MAX(m->gen, v->gen);
			return;
		}
	}
	if (ninval >= PW_NTQ_INVAL || nt->qcount >= PW_NTQ_MAX) {
		/* full: widen a queued one of this key to all of it, or drop */
		for (unsigned int k = 0; k < nt->qcount; k++) {
			struct pw_nmsg *m = &nt->q[(nt->qhead + k) % PW_NTQ_MAX];

			if (m->op == PW_OP_INVALIDATE && m->rkey == v->rkey) {
				m->start = 0;
				m->len = UINT64_MAX;
				m->gen = PW_MAX(m->gen, v->gen);
				return;
			}
		}
		atomic_fetch_add_explicit(&qp->ctx->nring.dropped, 1,
					  memory_order_relaxed);
		return;
	}
	nt->q[(nt->qhead + nt->qcount++) % PW_NTQ_MAX] = (struct pw_nmsg){
		.op = PW_OP_INVALIDATE, .rkey = v->rkey, .start = v->start,
		.len = v->end - v->start, .gen = v->gen };
}

/* Queue an answer (VALIDATE) or a FAULT_IN: there is always room. */
static void ntq_push_locked(struct pw_qp_i *qp, const struct pw_nmsg *m)
{
	struct pw_qp_notify *nt = &qp->nt;

	if (nt->qcount >= PW_NTQ_MAX)
		return;	/* cannot happen: INVALIDATEs leave two slots */
	nt->q[(nt->qhead + nt->qcount++) % PW_NTQ_MAX] = *m;
}

void pw_notify_key_used_locked(struct pw_qp_i *qp, uint32_t rkey)
{
	struct pw_qp_notify *nt = &qp->nt;

	for (unsigned int i = 0; i < PW_NT_KEYS; i++)
		if (nt->keys[i] == rkey)
			return;
	nt->keys[nt->keys_next] = rkey;
	nt->keys_next = (nt->keys_next + 1) % PW_NT_KEYS;
}

static bool key_known_locked(const struct pw_qp_i *qp, uint32_t rkey)
{
	for (unsigned int i = 0; i < PW_NT_KEYS; i++)
		if (qp->nt.keys[i] == rkey)
			return true;
	return false;
}

void pw_notify_reap(struct pw_context *ctx)
{
	struct pw_nring *r = &ctx->nring;
	struct pw_ninv batch[PW_NRING_MAX];
	unsigned int n;

	if (!atomic_load_explicit(&r->pending, memory_order_acquire))
		return;
	pthread_mutex_lock(&r->lock);
	n = r->n;
	memcpy(batch, r->e, n * sizeof(batch[0]));
	r->n = 0;
	atomic_store_explicit(&r->pending, false, memory_order_relaxed);
	pthread_mutex_unlock(&r->lock);

	for (struct pw_qp_i *qp = ctx->engine.qps; qp; qp = qp->eng_next) {
		bool any = false;

		if (!qp->nt.send_inval)
			continue;
		pthread_mutex_lock(&qp->lock);
		if (pw_qp_get_state(qp) == PW_QPS_RTS) {
			for (unsigned int i = 0; i < n; i++) {
				/* other PDs have no access; keys it never used stay unknown */
				if (batch[i].pd != qp->ibqp.pd ||
				    !key_known_locked(qp, batch[i].rkey))
					continue;
				ntq_invalidate_locked(qp, &batch[i]);
				any = true;
			}
			if (any)
				pw_tx_flush_locked(qp);
		}
		pthread_mutex_unlock(&qp->lock);
	}
}

bool pw_notify_next_locked(struct pw_qp_i *qp)
{
	struct pw_qp_notify *nt = &qp->nt;
	struct pw_tx *tx = &qp->tx;
	struct pw_hdr h = { 0 };
	struct pw_nmsg m;

	if (!nt->qcount)
		return false;
	m = nt->q[nt->qhead];
	nt->qhead = (nt->qhead + 1) % PW_NTQ_MAX;
	nt->qcount--;
	h.opcode = m.op;
	h.psn = m.token;
	h.rkey = m.rkey;
	h.raddr = m.start;
	h.imm = m.imm;
	h.range_len = m.len;
	h.gen = m.gen;
	pw_tx_start_locked(qp, TX_CTL, &h);
	tx->ndata = 0;
	tx->data_left = 0;
	tx->trailer_len = 0;
	if (m.op == PW_OP_FAULT_IN)
		atomic_fetch_add_explicit(&qp->ctx->nring.fault_in_sent, 1,
					  memory_order_relaxed);
	else
		atomic_fetch_add_explicit(&qp->ctx->nring.sent, 1,
					  memory_order_relaxed);
	return true;
}

/* ------------------------------------------------------------------ */
/* requester: the view of the peer's invalid ranges                     */
/* ------------------------------------------------------------------ */

static void view_del_locked(struct pw_qp_i *qp, unsigned int i)
{
	struct pw_qp_notify *nt = &qp->nt;

	nt->view[i] = nt->view[--nt->nview];
	atomic_fetch_sub_explicit(&qp->ctx->nring.views, 1, memory_order_relaxed);
}

/* Add [s, e) of @rkey at @gen: merged into a touching entry of the key. */
static void view_add_locked(struct pw_qp_i *qp, uint32_t rkey, uint64_t s,
			    uint64_t e, uint64_t gen)
{
	struct pw_qp_notify *nt = &qp->nt;
	unsigned int i, oldest = 0, same = PW_RVIEW_MAX;

	for (i = 0; i < nt->nview; i++) {
		struct pw_rview_ent *v = &nt->view[i];

		if (v->rkey != rkey)
			continue;
		same = i;
		if (touch_or_adjacent(v->start, v->end, s, e)) {
			v->start = PW_MIN(v->start, s);
			v->end = PW_MAX(v->end, e);
			v->gen = PW_MAX(v->gen, gen);
			v->stamp = ++nt->clock;
			return;
		}
	}
	if (nt->nview == PW_RVIEW_MAX) {
		/*
		 * Bounded (PW_RVIEW_MAX): a key with a range here already
		 * becomes one whole-key range; otherwise the oldest entry is
		 * forgotten (stale-valid only costs a target fault).
		 */
		if (same < PW_RVIEW_MAX) {
			struct pw_rview_ent *v = &nt->view[same];

			v->start = 0;
			v->end = UINT64_MAX;
			v->gen = PW_MAX(v->gen, gen);
			v->stamp = ++nt->clock;
			return;
		}
		for (i = 1; i < nt->nview; i++)
			if (nt->view[i].stamp < nt->view[oldest].stamp)
				oldest = i;
		view_del_locked(qp, oldest);
	}
	nt->view[nt->nview++] = (struct pw_rview_ent){ .rkey = rkey,
		.start = s, .end = e, .gen = gen, .stamp = ++nt->clock };
	atomic_fetch_add_explicit(&qp->ctx->nring.views, 1, memory_order_relaxed);
}

/*
 * [s, e) of @rkey is valid as of @gen: clear it from entries invalidated
 * at or before @gen. An entry split in two needs a slot; without one the
 * entry stays whole (a stale invalid range costs one FAULT_IN).
 */
static void view_clear_locked(struct pw_qp_i *qp, uint32_t rkey, uint64_t s,
			      uint64_t e, uint64_t gen)
{
	struct pw_qp_notify *nt = &qp->nt;

	for (unsigned int i = 0; i < nt->nview;) {
		struct pw_rview_ent *v = &nt->view[i];

		if (v->rkey != rkey || v->gen > gen || v->end <= s || v->start >= e) {
			i++;
			continue;
		}
		if (v->start >= s && v->end <= e) {
			view_del_locked(qp, i);
			continue;	/* slot i holds another entry now */
		}
		if (v->start < s && v->end > e) {
			if (nt->nview == PW_RVIEW_MAX) {
				i++;
				continue;
			}
			nt->view[nt->nview++] = (struct pw_rview_ent){
				.rkey = rkey, .start = e, .end = v->end,
				.gen = v->gen, .stamp = ++nt->clock };
			atomic_fetch_add_explicit(&qp->ctx->nring.views, 1,
						  memory_order_relaxed);
			v = &nt->view[i];
			v->end = s;
		} else if (v->start < s) {
			v->end = s;
		} else {
			v->start = e;
		}
		i++;
	}
}

static bool view_hit_locked(struct pw_qp_i *qp, uint32_t rkey, uint64_t a,
			    uint64_t l)
{
	struct pw_qp_notify *nt = &qp->nt;

	for (unsigned int i = 0; i < nt->nview; i++) {
		const struct pw_rview_ent *v = &nt->view[i];

		if (v->rkey == rkey && a < v->end && a + l > v->start)
			return true;
	}
	return false;
}

/* The remote range @w touches, if any: false for a SEND or an empty op. */
static bool wqe_range(const struct pw_wqe *w, uint64_t *len, bool *write)
{
	switch (w->opcode) {
	case PW_WR_RDMA_WRITE:
	case PW_WR_RDMA_WRITE_WITH_IMM:
		*len = w->length;
		*write = true;
		break;
	case PW_WR_RDMA_READ:
		*len = w->length;
		*write = false;
		break;
	case PW_WR_ATOMIC_CMP_AND_SWP:
	case PW_WR_ATOMIC_FETCH_AND_ADD:
		*len = 8;
		*write = true;
		break;
	default:
		return false;	/* SEND: no remote range */
	}
	return *len && *len <= UINT64_MAX - w->raddr;
}

bool pw_notify_req_ok_locked(struct pw_qp_i *qp, const struct pw_wqe *w)
{
	struct pw_qp_notify *nt = &qp->nt;
	uint64_t len;
	bool write;

	/*
	 * A request asked for goes once its own VALIDATE is in: requests go
	 * in order, so those behind it wait anyway (RC), while the target
	 * is still faulting theirs in.
	 */
	if (w->nt_asked) {
		for (unsigned int i = 0; i < nt->nwait; i++)
			if (nt->wait_token[i] == w->psn)
				return false;
		return true;
	}
	if (!nt->nview || !nt->peer ||
	    !wqe_range(w, &len, &write) || !view_hit_locked(qp, w->rkey, w->raddr, len))
		return true;
	/*
	 * "The writes would not occur if the mapping has not been
	 * established": ask for this request's range, and for those of the
	 * requests queued behind it, in one round trip (they would each
	 * wait for one otherwise, the QP held every time).
	 */
	for (uint32_t c = qp->sq_next; c != qp->sq_tail && nt->nwait < PW_NT_BATCH &&
	     nt->qcount < PW_NTQ_MAX; c++) {
		struct pw_wqe *x = pw_sq_at(qp, c);

		if (x->status != PW_WC_SUCCESS)
			break;
		if (x->nt_asked || !wqe_range(x, &len, &write) ||
		    !view_hit_locked(qp, x->rkey, x->raddr, len))
			continue;
		ntq_push_locked(qp, &(struct pw_nmsg){ .op = PW_OP_FAULT_IN,
				.token = x->psn, .rkey = x->rkey,
				.imm = write ? PW_WIRE_FAULT_IN_WRITE : 0,
				.start = x->raddr, .len = len });
		/* each request gets one round at most: churn cannot hold it */
		x->nt_asked = true;
		nt->wait_token[nt->nwait++] = x->psn;
	}
	return false;	/* asked now, or when a batch slot frees up */
}

/* ------------------------------------------------------------------ */
/* target: FAULT_IN -> fault -> VALIDATE                                */
/* ------------------------------------------------------------------ */

static void answer_locked(struct pw_qp_i *qp, uint32_t token, uint32_t rkey,
			  uint64_t start, uint64_t len, uint32_t syn, uint64_t gen)
{
	ntq_push_locked(qp, &(struct pw_nmsg){ .op = PW_OP_VALIDATE,
			.token = token, .rkey = rkey, .imm = syn,
			.start = start, .len = len, .gen = gen });
	pw_tx_flush_locked(qp);
}

/* The MR's generation, if the key still names an MR (0 otherwise). */
static uint64_t mr_gen(struct pw_qp_i *qp, uint32_t rkey)
{
	struct pw_mr_i *mr = pw_mr_get(&qp->ctx->keys, rkey);
	uint64_t gen = 0;

	if (mr) {
		gen = atomic_load_explicit(&mr->ngen, memory_order_acquire);
		pw_mr_put(mr);
	}
	return gen;
}

static void fault_in_done(struct pw_fault *f)
{
	struct pw_nt_fault *nf = container_of(f, struct pw_nt_fault, f);
	struct pw_qp_i *qp = nf->qp;
	/* the generation before any later invalidation is queued behind us */
	uint64_t gen = mr_gen(qp, f->key);

	if (!qp->in_engine)
		return;		/* destroyed meanwhile: pw_destroy_qp cancels */
	pthread_mutex_lock(&qp->lock);
	nf->busy = false;
	if (pw_qp_get_state(qp) == PW_QPS_RTS)
		answer_locked(qp, nf->token, f->key, f->addr, f->len,
			      f->err ? PW_SYN_REMOTE_ACCESS : PW_SYN_OK, gen);
	pthread_mutex_unlock(&qp->lock);
}

static void rx_fault_in(struct pw_qp_i *qp, const struct pw_hdr *h)
{
	bool write = h->nflags & PW_WIRE_FAULT_IN_WRITE;
	struct pw_nt_fault *nf = NULL;
	struct pw_mr_i *mr;
	uint32_t syn = PW_SYN_OK;
	bool odp = false;
	uint64_t gen = 0;

	atomic_fetch_add_explicit(&qp->ctx->nring.fault_in_received, 1,
				  memory_order_relaxed);
	mr = pw_mr_get(&qp->ctx->keys, h->rkey);
	if (!mr || mr->ibmr.pd != qp->ibqp.pd ||
	    !(mr->ibmr.access & (write ? PW_ACCESS_REMOTE_WRITE | PW_ACCESS_REMOTE_ATOMIC :
					 PW_ACCESS_REMOTE_READ)) ||
	    !pw_mr_covers(mr, h->raddr, h->range_len))
		syn = PW_SYN_REMOTE_ACCESS;
	else
		odp = mr->pt != NULL;
	if (mr) {
		gen = atomic_load_explicit(&mr->ngen, memory_order_acquire);
		pw_mr_put(mr);
	}
	pthread_mutex_lock(&qp->lock);
	if (syn != PW_SYN_OK && ++qp->nt.bad_fault_in > PW_NT_BAD_MAX) {
		/* probing keys at message rate, without losing the QP: no */
		pthread_mutex_unlock(&qp->lock);
		pw_rx_protocol_error(qp);
		return;
	}
	if (syn == PW_SYN_OK)
		pw_notify_key_used_locked(qp, h->rkey);
	if (syn == PW_SYN_OK && odp) {
		for (int i = 0; i < PW_NT_BATCH && !nf; i++)
			if (!qp->nt_fault[i].busy)
				nf = &qp->nt_fault[i];
		/* more than a batch at once (section 14): the op will fault */
		if (!nf)
			syn = PW_SYN_REMOTE_ACCESS;
	}
	if (syn != PW_SYN_OK || !odp) {
		/* pinned memory is always there; a bad range is answered now */
		answer_locked(qp, h->psn, h->rkey, h->raddr, h->range_len, syn, gen);
		pthread_mutex_unlock(&qp->lock);
		return;
	}
	nf->busy = true;
	nf->token = h->psn;
	nf->qp = qp;
	pthread_mutex_unlock(&qp->lock);
	nf->f.key = h->rkey;
	nf->f.addr = h->raddr;
	nf->f.len = h->range_len;
	nf->f.write = write;
	nf->f.done = fault_in_done;
	pw_fault_submit(&qp->ctx->faults, &nf->f);
}

void pw_notify_rx(struct pw_qp_i *qp, const struct pw_hdr *h)
{
	struct pw_qp_notify *nt = &qp->nt;
	uint64_t end = h->raddr + h->range_len;	/* no wrap: the decoder */

	if (h->opcode == PW_OP_FAULT_IN) {
		rx_fault_in(qp, h);
		return;
	}
	atomic_fetch_add_explicit(&qp->ctx->nring.received, 1, memory_order_relaxed);
	pthread_mutex_lock(&qp->lock);
	if (h->opcode == PW_OP_INVALIDATE) {
		view_add_locked(qp, h->rkey, h->raddr, end, h->gen);
		atomic_store_explicit(&qp->ctx->nring.last_rx_ns, pw_now_ns(),
				      memory_order_relaxed);
	} else {
		if (h->syndrome == PW_SYN_OK)
			view_clear_locked(qp, h->rkey, h->raddr, end, h->gen);
		/*
		 * Answered: the request goes when its turn comes, valid or
		 * not (an error is the target's to report); none asks twice.
		 */
		for (unsigned int i = 0; i < nt->nwait; i++) {
			if (nt->wait_token[i] != h->psn)
				continue;
			nt->wait_token[i] = nt->wait_token[--nt->nwait];
			pw_tx_flush_locked(qp);	/* it may be the next to go */
			break;
		}
	}
	pthread_mutex_unlock(&qp->lock);
}

/* ------------------------------------------------------------------ */
/* QP life                                                              */
/* ------------------------------------------------------------------ */

void pw_notify_qp_live(struct pw_qp_i *qp, uint32_t features)
{
	qp->nt.peer = features & PW_WIRE_FEAT_NOTIFY;
	qp->nt.send_inval = qp->nt.peer && qp->fault_policy == PW_FAULT_NOTIFY;
	if (qp->nt.send_inval)
		atomic_fetch_add_explicit(&qp->ctx->nring.senders, 1,
					  memory_order_release);
}

void pw_notify_qp_gone(struct pw_qp_i *qp)
{
	if (qp->nt.send_inval)
		atomic_fetch_sub_explicit(&qp->ctx->nring.senders, 1,
					  memory_order_relaxed);
	qp->nt.send_inval = false;
	atomic_fetch_sub_explicit(&qp->ctx->nring.views, (int_fast64_t)qp->nt.nview,
				  memory_order_relaxed);
	qp->nt.nview = 0;
}
