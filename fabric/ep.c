/* SPDX-License-Identifier: MIT */
/*
 * MSG endpoints and passive endpoints: binding, the connection manager
 * (fi_connect, fi_listen, fi_accept, fi_reject, fi_shutdown, events) and
 * the op records every posted WR carries.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "pwf.h"

/* ---- op records ------------------------------------------------------ */

#define PWF_OP_CHUNK 256

static struct pwf_op *pwf_op_get(struct pwf_ep *ep)
{
	struct pwf_op *op;

	pthread_mutex_lock(&ep->lock);
	op = ep->free_ops;
	if (!op && ep->ops_total < ep->ops_max) {
		struct pwf_op *chunk = calloc(PWF_OP_CHUNK, sizeof(*chunk));
		struct pwf_op **nc = realloc(ep->op_chunks,
					     (ep->n_chunks + 1) * sizeof(*nc));

		if (chunk && nc) {
			ep->op_chunks = nc;
			ep->op_chunks[ep->n_chunks++] = chunk;
			for (int i = PWF_OP_CHUNK - 1; i >= 0; i--) {
				chunk[i].ep = ep;
				chunk[i].next = ep->free_ops;
				ep->free_ops = &chunk[i];
			}
			ep->ops_total += PWF_OP_CHUNK;
			op = ep->free_ops;
		} else {
			free(chunk);
			if (nc)
				ep->op_chunks = nc;
		}
	}
	if (op)
		ep->free_ops = op->next;
	pthread_mutex_unlock(&ep->lock);
	return op;
}

struct pwf_op *pwf_op_new(struct pwf_ep *ep, void *context, uint64_t flags,
			  size_t len, bool report, uint8_t cntr)
{
	struct pwf_op *op = pwf_op_get(ep);

	if (!op)
		return NULL;
	op->context = context;
	op->flags = flags;
	op->buf = NULL;
	op->len = len;
	op->report = report;
	op->cntr = cntr;
	return op;
}

/*
 * A transmit that wants neither a CQ entry nor a counter goes unsignalled,
 * as a verbs application posts one: it completes only if it fails, and the
 * peer ACKs it together with others (coalesced) instead of at once, which
 * keeps one ACK per message off the wire and off a ping-pong's critical
 * path. Its failure is still reported, through the endpoint's quiet record
 * (no context). Anything else is signalled, with a record of its own.
 */
struct pwf_op *pwf_tx_op(struct pwf_ep *ep, void *context, uint64_t flags,
			 size_t len, bool report, uint8_t cntr,
			 unsigned int *send_flags)
{
	if (!report && !ep->cntr[cntr])
		return &ep->quiet_op;
	*send_flags |= PW_SEND_SIGNALED;
	return pwf_op_new(ep, context, flags, len, report, cntr);
}

void pwf_op_put(struct pwf_op *op)
{
	struct pwf_ep *ep = op->ep;

	if (op == &ep->quiet_op)
		return;
	pthread_mutex_lock(&ep->lock);
	op->next = ep->free_ops;
	ep->free_ops = op;
	pthread_mutex_unlock(&ep->lock);
}

struct pw_qp *pwf_ep_qp(struct pwf_ep *ep, ssize_t *err)
{
	struct pw_qp *qp = atomic_load_explicit(&ep->qp, memory_order_acquire);
	int st = atomic_load_explicit(&ep->state, memory_order_acquire);

	if (qp && (st == PWF_EP_CONNECTED || st == PWF_EP_SHUTDOWN))
		return qp;
	/* fi_endpoint(3): data transfers need a connected endpoint */
	*err = -FI_EOPBADSTATE;
	return NULL;
}

int pwf_desc_lkey(struct pwf_ep *ep, void *desc, uint32_t *lkey)
{
	struct pwf_mr *mr = desc;

	if (mr && mr->mr) {
		*lkey = mr->mr->lkey;
		return 0;
	}
	/* no descriptor (no FI_MR_LOCAL) or a zero-length region */
	return pwf_domain_implicit_lkey(ep->dom, lkey);
}

/* ---- connection events ----------------------------------------------- */

/* An entry about @fid: @err 0 for an event, else an error with @data as err_data. */
static void push(struct pwf_eq *eq, uint32_t event, int err, int prov_errno,
		 fid_t fid, void *context, const void *data, size_t len)
{
	struct pwf_eq_entry *e = pwf_eq_entry_new(len);

	if (!e) {
		PWF_WARN(FI_LOG_EQ, "event lost: out of memory\n");
		return;
	}
	e->event = event;
	e->err = err;
	e->prov_errno = prov_errno;
	e->fid = fid;
	e->context = context;
	e->len = len;
	if (len)
		memcpy(e->buf, data, len);
	pwf_eq_push(eq, e);
}

void pwf_ep_cm_event(struct pwf_ep *ep, const struct pw_cm_event *ev)
{
	fid_t fid = &ep->ep_fid.fid;
	void *ctx = ep->ep_fid.fid.context;
	struct pwf_eq *eq = ep->eq;

	if (ep->closing || !eq)
		return;
	switch (ev->event) {
	case PW_CM_EVENT_ESTABLISHED:
		atomic_store_explicit(&ep->state, PWF_EP_CONNECTED, memory_order_release);
		push(eq, FI_CONNECTED, 0, 0, fid, ctx, ev->private_data,
		     ev->private_data_len);
		break;
	case PW_CM_EVENT_REJECTED:
		atomic_store_explicit(&ep->state, PWF_EP_SHUTDOWN, memory_order_release);
		push(eq, 0, FI_ECONNREFUSED, ev->status, fid, ctx,
		     ev->private_data, ev->private_data_len);
		break;
	case PW_CM_EVENT_UNREACHABLE:
		atomic_store_explicit(&ep->state, PWF_EP_SHUTDOWN, memory_order_release);
		push(eq, 0, ev->status == -ETIMEDOUT ? FI_ETIMEDOUT : FI_EHOSTUNREACH,
		     ev->status, fid, ctx, NULL, 0);
		break;
	case PW_CM_EVENT_CONNECT_ERROR:
		atomic_store_explicit(&ep->state, PWF_EP_SHUTDOWN, memory_order_release);
		push(eq, 0, FI_ECONNABORTED, ev->status, fid, ctx, NULL, 0);
		break;
	case PW_CM_EVENT_DISCONNECTED:
		atomic_store_explicit(&ep->state, PWF_EP_SHUTDOWN, memory_order_release);
		push(eq, FI_SHUTDOWN, 0, 0, fid, ctx, NULL, 0);
		break;
	default:
		break;	/* TIMEWAIT_EXIT: nothing for libfabric */
	}
}

void pwf_pep_connreq(struct pwf_pep *pep, const struct pw_cm_event *ev)
{
	struct pwf_connreq *cr;
	struct pwf_eq_entry *e;
	struct fi_info *info;

	if (!pep->eq) {
		pw_reject(ev->request, NULL, 0);
		return;
	}
	cr = calloc(1, sizeof(*cr));
	info = pwf_connreq_info(pep->info, &ev->peer_addr);
	e = pwf_eq_entry_new(ev->private_data_len);
	if (!cr || !info || !e) {
		free(cr);
		fi_freeinfo(info);
		free(e);
		pw_reject(ev->request, NULL, 0);
		return;
	}
	cr->fid.fclass = FI_CLASS_CONNREQ;
	cr->req = ev->request;
	info->handle = &cr->fid;
	e->event = FI_CONNREQ;
	e->fid = &pep->pep_fid.fid;
	e->context = pep->pep_fid.fid.context;
	e->info = info;
	e->len = ev->private_data_len;
	if (e->len)
		memcpy(e->buf, ev->private_data, e->len);
	pwf_eq_push(pep->eq, e);
}

/* ---- QP creation ------------------------------------------------------ */

static void qp_attr(struct pwf_ep *ep, struct pw_qp_init_attr *a)
{
	memset(a, 0, sizeof(*a));
	a->qp_context = ep;
	a->send_cq = ep->scq->cq;
	a->recv_cq = ep->rcq->cq;
	a->cap.max_send_wr = (uint32_t)ep->info->tx_attr->size;
	a->cap.max_recv_wr = (uint32_t)ep->info->rx_attr->size;
	a->cap.max_send_sge = (uint32_t)ep->info->tx_attr->iov_limit;
	a->cap.max_recv_sge = (uint32_t)ep->info->rx_attr->iov_limit;
	a->cap.max_inline_data = (uint32_t)ep->inject_size;
	/* WRs that need a completion ask for one (pwf_tx_op) */
	a->sq_sig_all = 0;
	/* libfabric's MSG transfers wait for a receive: retry RNR for ever */
	a->rnr_retry = 7;
}

static void post_pending(struct pwf_ep *ep, struct pw_qp *qp)
{
	struct pwf_pending_recv *p;

	pthread_mutex_lock(&ep->lock);
	while ((p = ep->pend_head)) {
		struct pw_recv_wr *bad;
		int ret;

		ep->pend_head = p->next;
		p->wr.sg_list = p->sge;
		ret = pw_post_recv(qp, &p->wr, &bad);
		if (ret)
			PWF_WARN(FI_LOG_EP_DATA, "posting an early receive: %s\n",
				 pw_last_error());
		free(p);
	}
	ep->pend_tail = NULL;
	pthread_mutex_unlock(&ep->lock);
}

static int ep_connect(struct fid_ep *ep_fid, const void *addr,
		      const void *param, size_t paramlen)
{
	struct pwf_ep *ep = to_pwf_ep(ep_fid);
	const struct sockaddr *sa = addr;
	struct pw_qp_init_attr a;
	struct pw_conn_param cp = { 0 };
	char host[INET6_ADDRSTRLEN];
	uint16_t port;
	struct pw_qp *qp;

	if (!ep->enabled || !ep->eq)
		return -FI_EOPBADSTATE;
	if (!sa || paramlen > PW_MAX_PRIVATE_DATA || (paramlen && !param))
		return -FI_EINVAL;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = addr;

		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		port = ntohs(s4->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = addr;

		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		port = ntohs(s6->sin6_port);
	} else {
		return -FI_EINVAL;
	}
	if (atomic_load_explicit(&ep->state, memory_order_acquire) != PWF_EP_IDLE)
		return -FI_EOPBADSTATE;
	qp_attr(ep, &a);
	cp.private_data = param;
	cp.private_data_len = (uint32_t)paramlen;
	/*
	 * Connect from the endpoint's own address: ofi_rxm names each peer
	 * by its listening address and finds a connection request's peer by
	 * the request's source, so a request from another interface would
	 * not be matched to the peer that sent it.
	 */
	if (pwf_addr_is_set(&ep->src))
		cp.src_addr = (const struct sockaddr *)&ep->src;
	atomic_store_explicit(&ep->state, PWF_EP_CONNECTING, memory_order_release);
	pthread_mutex_lock(&ep->dom->fab->cm_lock);
	qp = pw_connect_async(ep->dom->pd, &a, host, port, &cp, ep->dom->fab->cmch);
	if (qp)
		atomic_store_explicit(&ep->qp, qp, memory_order_release);
	pthread_mutex_unlock(&ep->dom->fab->cm_lock);
	if (!qp) {
		int e = errno;

		atomic_store_explicit(&ep->state, PWF_EP_IDLE, memory_order_release);
		PWF_WARN(FI_LOG_EP_CTRL, "pw_connect_async(%s:%u): %s\n", host, port,
			 pw_last_error());
		return pwf_errno(-e);
	}
	post_pending(ep, qp);
	return 0;
}

static int ep_accept(struct fid_ep *ep_fid, const void *param, size_t paramlen)
{
	struct pwf_ep *ep = to_pwf_ep(ep_fid);
	struct pw_qp_init_attr a;
	struct pw_conn_param cp = { 0 };
	struct pw_qp *qp;

	if (!ep->enabled || !ep->eq || !ep->req)
		return -FI_EOPBADSTATE;
	if (paramlen > PW_MAX_PRIVATE_DATA || (paramlen && !param))
		return -FI_EINVAL;
	qp_attr(ep, &a);
	cp.private_data = param;
	cp.private_data_len = (uint32_t)paramlen;
	atomic_store_explicit(&ep->state, PWF_EP_CONNECTING, memory_order_release);
	pthread_mutex_lock(&ep->dom->fab->cm_lock);
	qp = pw_accept_request(ep->req, ep->dom->pd, &a, &cp);
	ep->req = NULL;		/* consumed, even on failure */
	if (qp)
		atomic_store_explicit(&ep->qp, qp, memory_order_release);
	pthread_mutex_unlock(&ep->dom->fab->cm_lock);
	if (!qp) {
		int e = errno;

		atomic_store_explicit(&ep->state, PWF_EP_SHUTDOWN, memory_order_release);
		PWF_WARN(FI_LOG_EP_CTRL, "pw_accept_request: %s\n", pw_last_error());
		return pwf_errno(-e);
	}
	post_pending(ep, qp);
	return 0;
}

static int ep_shutdown(struct fid_ep *ep_fid, uint64_t flags)
{
	struct pwf_ep *ep = to_pwf_ep(ep_fid);
	struct pw_qp *qp = atomic_load_explicit(&ep->qp, memory_order_acquire);

	if (!qp)
		return -FI_EOPBADSTATE;
	atomic_store_explicit(&ep->state, PWF_EP_SHUTDOWN, memory_order_release);
	return pwf_errno(pw_disconnect(qp));
}

static int copy_addr(const void *sa, socklen_t len, void *addr, size_t *addrlen)
{
	size_t room = *addrlen;

	*addrlen = len;
	if (room < len)
		return -FI_ETOOSMALL;
	memcpy(addr, sa, len);
	return 0;
}

static int ep_getname(fid_t fid, void *addr, size_t *addrlen)
{
	struct pwf_ep *ep = pwf_container_of(fid, struct pwf_ep, ep_fid.fid);
	struct pw_qp *qp = atomic_load_explicit(&ep->qp, memory_order_acquire);
	struct pw_qp_attr qa;

	if (!qp) {
		if (ep->src.ss_family)
			return copy_addr(&ep->src, (socklen_t)pwf_sockaddr_len(&ep->src),
					 addr, addrlen);
		return -FI_EOPBADSTATE;
	}
	if (pw_query_qp(qp, &qa, sizeof(qa)))
		return -FI_EOTHER;
	return copy_addr(&qa.local_addr, (socklen_t)pwf_sockaddr_len(&qa.local_addr),
			 addr, addrlen);
}

static int ep_getpeer(struct fid_ep *ep_fid, void *addr, size_t *addrlen)
{
	struct pwf_ep *ep = to_pwf_ep(ep_fid);
	struct pw_qp *qp = atomic_load_explicit(&ep->qp, memory_order_acquire);
	struct pw_qp_attr qa;

	if (!qp)
		return -FI_EOPBADSTATE;
	if (pw_query_qp(qp, &qa, sizeof(qa)))
		return -FI_EOTHER;
	return copy_addr(&qa.peer_addr, (socklen_t)pwf_sockaddr_len(&qa.peer_addr),
			 addr, addrlen);
}

static int no_setname(fid_t fid, void *addr, size_t addrlen)
{
	return -FI_ENOSYS;
}

static int no_listen(struct fid_pep *pep)
{
	return -FI_ENOSYS;
}

static int no_reject(struct fid_pep *pep, fid_t handle, const void *param,
		     size_t paramlen)
{
	return -FI_ENOSYS;
}

static int no_join(struct fid_ep *ep, const void *addr, uint64_t flags,
		   struct fid_mc **mc, void *context)
{
	return -FI_ENOSYS;
}

static int no_connect(struct fid_ep *ep, const void *addr, const void *param,
		      size_t paramlen)
{
	return -FI_ENOSYS;
}

static int no_accept(struct fid_ep *ep, const void *param, size_t paramlen)
{
	return -FI_ENOSYS;
}

static int no_shutdown(struct fid_ep *ep, uint64_t flags)
{
	return -FI_ENOSYS;
}

static int no_getpeer(struct fid_ep *ep, void *addr, size_t *addrlen)
{
	return -FI_ENOSYS;
}

static struct fi_ops_cm ep_cm_ops = {
	.size = sizeof(struct fi_ops_cm),
	.setname = no_setname,
	.getname = ep_getname,
	.getpeer = ep_getpeer,
	.connect = ep_connect,
	.listen = no_listen,
	.accept = ep_accept,
	.reject = no_reject,
	.shutdown = ep_shutdown,
	.join = no_join,
};

/* ---- endpoint options and lifetime ------------------------------------ */

static ssize_t ep_cancel(fid_t fid, void *context)
{
	struct pwf_ep *ep = pwf_container_of(fid, struct pwf_ep, ep_fid.fid);
	struct pwf_pending_recv **pp, *p;

	/* only receives not yet handed to pagewire can be taken back */
	pthread_mutex_lock(&ep->lock);
	for (pp = &ep->pend_head; (p = *pp); pp = &p->next) {
		struct pwf_op *op = (struct pwf_op *)(uintptr_t)p->wr.wr_id;

		if (op->context == context) {
			*pp = p->next;
			ep->pend_tail = NULL;
			for (struct pwf_pending_recv *q = ep->pend_head; q; q = q->next)
				ep->pend_tail = q;
			pthread_mutex_unlock(&ep->lock);
			free(p);
			pwf_op_put(op);
			return 0;
		}
	}
	pthread_mutex_unlock(&ep->lock);
	return -FI_ENOENT;
}

static int ep_getopt(fid_t fid, int level, int optname, void *optval, size_t *optlen)
{
	if (level != FI_OPT_ENDPOINT)
		return -FI_ENOPROTOOPT;
	if (optname == FI_OPT_CM_DATA_SIZE) {
		if (*optlen < sizeof(size_t)) {
			*optlen = sizeof(size_t);
			return -FI_ETOOSMALL;
		}
		*(size_t *)optval = PW_MAX_PRIVATE_DATA;
		*optlen = sizeof(size_t);
		return 0;
	}
	return -FI_ENOPROTOOPT;
}

static int ep_setopt(fid_t fid, int level, int optname, const void *optval,
		     size_t optlen)
{
	return -FI_ENOPROTOOPT;
}

static int no_tx_ctx(struct fid_ep *sep, int index, struct fi_tx_attr *attr,
		     struct fid_ep **tx_ep, void *context)
{
	return -FI_ENOSYS;
}

static int no_rx_ctx(struct fid_ep *sep, int index, struct fi_rx_attr *attr,
		     struct fid_ep **rx_ep, void *context)
{
	return -FI_ENOSYS;
}

static ssize_t no_size_left(struct fid_ep *ep)
{
	return -FI_ENOSYS;
}

static struct fi_ops_ep ep_ops = {
	.size = sizeof(struct fi_ops_ep),
	.cancel = ep_cancel,
	.getopt = ep_getopt,
	.setopt = ep_setopt,
	.tx_ctx = no_tx_ctx,
	.rx_ctx = no_rx_ctx,
	.rx_size_left = no_size_left,
	.tx_size_left = no_size_left,
};

static int ep_bind(struct fid *fid, struct fid *bfid, uint64_t flags)
{
	struct pwf_ep *ep = pwf_container_of(fid, struct pwf_ep, ep_fid.fid);

	if (ep->enabled)
		return -FI_EOPBADSTATE;
	switch (bfid->fclass) {
	case FI_CLASS_EQ:
		ep->eq = pwf_container_of(bfid, struct pwf_eq, eq_fid.fid);
		return 0;
	case FI_CLASS_CQ: {
		struct pwf_cq *cq = pwf_container_of(bfid, struct pwf_cq, cq_fid.fid);

		if (flags & ~(uint64_t)(FI_TRANSMIT | FI_RECV | FI_SELECTIVE_COMPLETION))
			return -FI_EBADFLAGS;
		if (flags & FI_TRANSMIT) {
			if (ep->scq)
				return -FI_EINVAL;
			ep->scq = cq;
			ep->scq_selective = flags & FI_SELECTIVE_COMPLETION;
			atomic_fetch_add_explicit(&cq->refs, 1, memory_order_relaxed);
		}
		if (flags & FI_RECV) {
			if (ep->rcq)
				return -FI_EINVAL;
			ep->rcq = cq;
			ep->rcq_selective = flags & FI_SELECTIVE_COMPLETION;
			atomic_fetch_add_explicit(&cq->refs, 1, memory_order_relaxed);
		}
		return 0;
	}
	case FI_CLASS_CNTR: {
		struct pwf_cntr *c = pwf_container_of(bfid, struct pwf_cntr, cntr_fid.fid);
		static const uint64_t kinds[PWF_CNTR_N] = { FI_SEND, FI_RECV, FI_READ, FI_WRITE };

		if (flags & ~(uint64_t)(FI_SEND | FI_RECV | FI_READ | FI_WRITE |
					FI_REMOTE_READ | FI_REMOTE_WRITE))
			return -FI_EBADFLAGS;
		/* remote RMA events: pagewire reports none (no FI_RMA_EVENT) */
		if (flags & (FI_REMOTE_READ | FI_REMOTE_WRITE))
			return -FI_ENOSYS;
		for (int i = 0; i < PWF_CNTR_N; i++)
			if (flags & kinds[i]) {
				if (ep->cntr[i])
					return -FI_EINVAL;
				ep->cntr[i] = c;
				atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
			}
		return 0;
	}
	case FI_CLASS_SRX_CTX:
	case FI_CLASS_STX_CTX:
		return -FI_ENOSYS;
	default:
		return -FI_EINVAL;
	}
}

static int ep_enable(struct pwf_ep *ep)
{
	if (ep->enabled)
		return 0;
	if (!ep->scq) {
		ep->scq = pwf_cq_hidden(ep->dom);
		if (!ep->scq)
			return -FI_ENOMEM;
		ep->scq_hidden = true;
	}
	if (!ep->rcq) {
		ep->rcq = pwf_cq_hidden(ep->dom);
		if (!ep->rcq)
			return -FI_ENOMEM;
		ep->rcq_hidden = true;
	}
	for (int i = 0; i < PWF_CNTR_N; i++) {
		struct pwf_cq *src = (i == PWF_CNTR_RECV) ? ep->rcq : ep->scq;

		if (ep->cntr[i] && pwf_cntr_add_source(ep->cntr[i], src))
			return -FI_ENOSPC;
	}
	ep->enabled = true;
	return 0;
}

static int ep_control(struct fid *fid, int command, void *arg)
{
	struct pwf_ep *ep = pwf_container_of(fid, struct pwf_ep, ep_fid.fid);

	switch (command) {
	case FI_ENABLE:
		return ep_enable(ep);
	case FI_GETOPSFLAG: {
		uint64_t *f = arg;

		if (*f & FI_TRANSMIT)
			*f = ep->tx_op_flags;
		else if (*f & FI_RECV)
			*f = ep->rx_op_flags;
		else
			return -FI_EINVAL;
		return 0;
	}
	case FI_SETOPSFLAG: {
		uint64_t *f = arg;

		if (*f & FI_TRANSMIT)
			ep->tx_op_flags = *f & ~(uint64_t)FI_TRANSMIT;
		else if (*f & FI_RECV)
			ep->rx_op_flags = *f & ~(uint64_t)FI_RECV;
		else
			return -FI_EINVAL;
		return 0;
	}
	default:
		return -FI_ENOSYS;
	}
}

static int ep_close(struct fid *fid)
{
	struct pwf_ep *ep = pwf_container_of(fid, struct pwf_ep, ep_fid.fid);
	struct pwf_fabric *fab = ep->dom->fab;
	struct pw_qp *qp = atomic_load_explicit(&ep->qp, memory_order_acquire);
	struct pwf_pending_recv *p;

	/*
	 * Under cm_lock no CM event of this QP is taken and unacknowledged,
	 * so pw_destroy_qp cannot wait on one, and none is routed here after.
	 */
	pthread_mutex_lock(&fab->cm_lock);
	ep->closing = true;
	if (qp)
		pw_destroy_qp(qp);	/* flushes every WR into the CQs */
	atomic_store_explicit(&ep->qp, NULL, memory_order_release);
	if (ep->eq)
		pwf_eq_purge(ep->eq, &ep->ep_fid.fid);
	pthread_mutex_unlock(&fab->cm_lock);
	if (ep->req)
		pw_reject(ep->req, NULL, 0);
	/* convert the flushed completions now: their op records die below */
	for (int i = 0; i < PWF_CNTR_N; i++)
		if (ep->cntr[i]) {
			struct pwf_cq *src = (i == PWF_CNTR_RECV) ? ep->rcq : ep->scq;

			pwf_cntr_del_source(ep->cntr[i], src);
		}
	if (ep->scq)
		pwf_cq_progress(ep->scq);
	if (ep->rcq && ep->rcq != ep->scq)
		pwf_cq_progress(ep->rcq);
	for (int i = 0; i < PWF_CNTR_N; i++)
		if (ep->cntr[i])
			atomic_fetch_sub_explicit(&ep->cntr[i]->refs, 1, memory_order_release);
	if (ep->scq) {
		if (ep->scq_hidden)
			pwf_cq_free(ep->scq);
		else
			atomic_fetch_sub_explicit(&ep->scq->refs, 1, memory_order_release);
	}
	if (ep->rcq) {
		if (ep->rcq_hidden)
			pwf_cq_free(ep->rcq);
		else
			atomic_fetch_sub_explicit(&ep->rcq->refs, 1, memory_order_release);
	}
	while ((p = ep->pend_head)) {
		ep->pend_head = p->next;
		free(p);
	}
	for (size_t i = 0; i < ep->n_chunks; i++)
		free(ep->op_chunks[i]);
	free(ep->op_chunks);
	fi_freeinfo(ep->info);
	pthread_mutex_destroy(&ep->lock);
	atomic_fetch_sub_explicit(&ep->dom->refs, 1, memory_order_release);
	free(ep);
	return 0;
}

static struct fi_ops ep_fi_ops = {
	.size = sizeof(struct fi_ops),
	.close = ep_close,
	.bind = ep_bind,
	.control = ep_control,
	.ops_open = pwf_no_ops_open,
	.tostr = pwf_no_tostr,
	.ops_set = pwf_no_ops_set,
};

int pwf_endpoint(struct fid_domain *domain, struct fi_info *info,
		 struct fid_ep **out, void *context)
{
	struct pwf_domain *dom = to_pwf_domain(domain);
	struct pwf_ep *ep;

	if (!info || !info->ep_attr || !info->tx_attr || !info->rx_attr)
		return -FI_EINVAL;
	if (info->ep_attr->type != FI_EP_MSG)
		return -FI_EINVAL;
	if (info->tx_attr->size > PW_MAX_QP_WR || info->rx_attr->size > PW_MAX_QP_WR ||
	    info->tx_attr->iov_limit > PW_MAX_SGE || info->rx_attr->iov_limit > PW_MAX_SGE ||
	    info->tx_attr->inject_size > PW_MAX_INLINE_DATA)
		return -FI_EINVAL;
	if (info->handle && info->handle->fclass != FI_CLASS_CONNREQ &&
	    pwf_pep_addr(info->handle, NULL) != 0)
		return -FI_EINVAL;
	ep = calloc(1, sizeof(*ep));
	if (!ep)
		return -FI_ENOMEM;
	/* its failures name no operation kind and bump no counter */
	ep->quiet_op.ep = ep;
	ep->quiet_op.cntr = PWF_CNTR_NONE;
	ep->info = fi_dupinfo(info);
	if (!ep->info) {
		free(ep);
		return -FI_ENOMEM;
	}
	if (!ep->info->tx_attr->size)
		ep->info->tx_attr->size = PWF_DEF_TX_SIZE;
	if (!ep->info->rx_attr->size)
		ep->info->rx_attr->size = PWF_DEF_RX_SIZE;
	if (!ep->info->tx_attr->iov_limit)
		ep->info->tx_attr->iov_limit = PW_MAX_SGE;
	if (!ep->info->rx_attr->iov_limit)
		ep->info->rx_attr->iov_limit = PW_MAX_SGE;
	ep->inject_size = info->tx_attr->inject_size;
	ep->tx_op_flags = info->tx_attr->op_flags;
	ep->rx_op_flags = info->rx_attr->op_flags;
	ep->rx_cq_data = (info->mode | info->rx_attr->mode) & FI_RX_CQ_DATA;
	/* records outlive the send queue until their CQ entry is read */
	ep->ops_max = 4 * (ep->info->tx_attr->size + ep->info->rx_attr->size) + PWF_OP_CHUNK;
	if (info->handle && info->handle->fclass == FI_CLASS_PEP) {
		/* as the tcp provider: the endpoint takes over the pep's address */
		pwf_pep_addr(info->handle, &ep->src);
		ep->info->handle = NULL;
	} else if (info->handle) {
		struct pwf_connreq *cr = pwf_container_of(info->handle, struct pwf_connreq, fid);

		ep->req = cr->req;
		cr->req = NULL;
		/* the handle is ours: the application never closes it */
		ep->info->handle = NULL;
		free(cr);
		info->handle = NULL;
	}
	if (!ep->src.ss_family && pwf_sockaddr_len(info->src_addr))
		memcpy(&ep->src, info->src_addr, pwf_sockaddr_len(info->src_addr));
	ep->dom = dom;
	pthread_mutex_init(&ep->lock, NULL);
	atomic_init(&ep->qp, NULL);
	atomic_init(&ep->state, PWF_EP_IDLE);
	ep->ep_fid.fid.fclass = FI_CLASS_EP;
	ep->ep_fid.fid.context = context;
	ep->ep_fid.fid.ops = &ep_fi_ops;
	ep->ep_fid.ops = &ep_ops;
	ep->ep_fid.cm = &ep_cm_ops;
	ep->ep_fid.msg = &pwf_msg_ops;
	ep->ep_fid.rma = &pwf_rma_ops;
	ep->ep_fid.tagged = &pwf_no_tagged_ops;
	ep->ep_fid.atomic = &pwf_atomic_ops;
	ep->ep_fid.collective = NULL;
	atomic_fetch_add_explicit(&dom->refs, 1, memory_order_relaxed);
	*out = &ep->ep_fid;
	return 0;
}

/* ---- passive endpoints ------------------------------------------------ */

static int pep_listen(struct fid_pep *pep_fid)
{
	struct pwf_pep *pep = to_pwf_pep(pep_fid);
	char host[INET6_ADDRSTRLEN] = "";
	uint16_t port = 0;
	const struct sockaddr *sa = (const struct sockaddr *)&pep->addr;

	if (!pep->eq)
		return -FI_EOPBADSTATE;
	if (pep->l)
		return 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)sa;

		if (s4->sin_addr.s_addr != htonl(INADDR_ANY))
			inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		port = ntohs(s4->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;

		if (!IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr))
			inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		port = ntohs(s6->sin6_port);
	}
	pthread_mutex_lock(&pep->fab->cm_lock);
	pep->l = pw_listen_channel(pep->fab->cmch, host[0] ? host : NULL, port, pep);
	pthread_mutex_unlock(&pep->fab->cm_lock);
	if (!pep->l) {
		int e = errno;

		PWF_WARN(FI_LOG_EP_CTRL, "pw_listen_channel(%s:%u): %s\n",
			 host[0] ? host : "*", port, pw_last_error());
		return e == EADDRINUSE ? -FI_EADDRINUSE : pwf_errno(-e);
	}
	/* an ephemeral port is known now: fi_getname reports it */
	port = htons(pw_listener_port(pep->l));
	if (sa->sa_family == AF_INET6)
		((struct sockaddr_in6 *)&pep->addr)->sin6_port = port;
	else
		((struct sockaddr_in *)&pep->addr)->sin_port = port;
	return 0;
}

static int pep_reject(struct fid_pep *pep_fid, fid_t handle, const void *param,
		      size_t paramlen)
{
	struct pwf_connreq *cr;
	int ret;

	if (!handle || handle->fclass != FI_CLASS_CONNREQ)
		return -FI_EINVAL;
	if (paramlen > PW_MAX_PRIVATE_DATA || (paramlen && !param))
		return -FI_EINVAL;
	cr = pwf_container_of(handle, struct pwf_connreq, fid);
	ret = cr->req ? pw_reject(cr->req, param, (uint32_t)paramlen) : -EINVAL;
	free(cr);
	return pwf_errno(ret);
}

static struct fi_ops pep_fi_ops;

int pwf_pep_addr(const struct fid *fid, struct sockaddr_storage *addr)
{
	const struct pwf_pep *pep;

	if (!fid || fid->fclass != FI_CLASS_PEP || fid->ops != &pep_fi_ops)
		return -FI_EINVAL;
	pep = pwf_container_of(fid, struct pwf_pep, pep_fid.fid);
	if (addr) {
		memset(addr, 0, sizeof(*addr));
		memcpy(addr, &pep->addr, pep->addrlen);
	}
	return 0;
}

static int pep_getname(fid_t fid, void *addr, size_t *addrlen)
{
	struct pwf_pep *pep = pwf_container_of(fid, struct pwf_pep, pep_fid.fid);

	return copy_addr(&pep->addr, pep->addrlen, addr, addrlen);
}

static int pep_setname(fid_t fid, void *addr, size_t addrlen)
{
	struct pwf_pep *pep = pwf_container_of(fid, struct pwf_pep, pep_fid.fid);

	if (pep->l)
		return -FI_EOPBADSTATE;
	if (!addr || !addrlen || addrlen != pwf_sockaddr_len(addr))
		return -FI_EINVAL;
	memcpy(&pep->addr, addr, addrlen);
	pep->addrlen = (socklen_t)addrlen;
	return 0;
}

static struct fi_ops_cm pep_cm_ops = {
	.size = sizeof(struct fi_ops_cm),
	.setname = pep_setname,
	.getname = pep_getname,
	.getpeer = no_getpeer,
	.connect = no_connect,
	.listen = pep_listen,
	.accept = no_accept,
	.reject = pep_reject,
	.shutdown = no_shutdown,
	.join = no_join,
};

static int pep_bind(struct fid *fid, struct fid *bfid, uint64_t flags)
{
	struct pwf_pep *pep = pwf_container_of(fid, struct pwf_pep, pep_fid.fid);

	if (bfid->fclass != FI_CLASS_EQ)
		return -FI_EINVAL;
	pep->eq = pwf_container_of(bfid, struct pwf_eq, eq_fid.fid);
	return 0;
}

static int pep_close(struct fid *fid)
{
	struct pwf_pep *pep = pwf_container_of(fid, struct pwf_pep, pep_fid.fid);

	pthread_mutex_lock(&pep->fab->cm_lock);
	if (pep->l)
		pw_close_listener(pep->l);
	if (pep->eq)
		pwf_eq_purge(pep->eq, &pep->pep_fid.fid);
	pthread_mutex_unlock(&pep->fab->cm_lock);
	fi_freeinfo(pep->info);
	atomic_fetch_sub_explicit(&pep->fab->refs, 1, memory_order_release);
	free(pep);
	return 0;
}

static struct fi_ops pep_fi_ops = {
	.size = sizeof(struct fi_ops),
	.close = pep_close,
	.bind = pep_bind,
	.control = pwf_no_control,
	.ops_open = pwf_no_ops_open,
	.tostr = pwf_no_tostr,
	.ops_set = pwf_no_ops_set,
};

static ssize_t pep_cancel(fid_t fid, void *context)
{
	return -FI_ENOENT;	/* a passive endpoint posts no operations */
}

static struct fi_ops_ep pep_ops = {
	.size = sizeof(struct fi_ops_ep),
	.cancel = pep_cancel,
	.getopt = ep_getopt,
	.setopt = ep_setopt,
	.tx_ctx = no_tx_ctx,
	.rx_ctx = no_rx_ctx,
	.rx_size_left = no_size_left,
	.tx_size_left = no_size_left,
};

int pwf_passive_ep(struct fid_fabric *fabric, struct fi_info *info,
		   struct fid_pep **out, void *context)
{
	struct pwf_fabric *fab = to_pwf_fabric(fabric);
	struct pwf_pep *pep;

	if (!info)
		return -FI_EINVAL;
	pep = calloc(1, sizeof(*pep));
	if (!pep)
		return -FI_ENOMEM;
	pep->info = fi_dupinfo(info);
	if (!pep->info) {
		free(pep);
		return -FI_ENOMEM;
	}
	if (info->src_addr && pwf_sockaddr_len(info->src_addr)) {
		pep->addrlen = (socklen_t)pwf_sockaddr_len(info->src_addr);
		memcpy(&pep->addr, info->src_addr, pep->addrlen);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&pep->addr;

		s4->sin_family = AF_INET;
		pep->addrlen = sizeof(*s4);
	}
	pep->fab = fab;
	pep->pep_fid.fid.fclass = FI_CLASS_PEP;
	pep->pep_fid.fid.context = context;
	pep->pep_fid.fid.ops = &pep_fi_ops;
	pep->pep_fid.ops = &pep_ops;
	pep->pep_fid.cm = &pep_cm_ops;
	atomic_fetch_add_explicit(&fab->refs, 1, memory_order_relaxed);
	*out = &pep->pep_fid;
	return 0;
}
