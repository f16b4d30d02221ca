/* SPDX-License-Identifier: MIT */
/*
 * Completion queues. A pw_cq holds pagewire's completions; reading the CQ
 * drains it, converts each into the CQ's format through the op record its
 * wr_id names, bumps the endpoint's counters, and queues it unless the op
 * asked for no completion (fi_inject, FI_SELECTIVE_COMPLETION). A blocked
 * fi_cq_sread waits in pw_get_cq_event(), which lets the waiting thread
 * run the progress engine itself (no hand-off between threads).
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "pwf.h"

#define PWF_POLL_BATCH 32
/* fi_cq_signal is seen by a blocked sread within this long */
#define PWF_SREAD_SLICE_MS 50

static bool q_push(struct pwf_cq *cq, const struct pwf_cqe *e)
{
	if (cq->q_count == cq->q_cap) {
		size_t ncap = cq->q_cap ? cq->q_cap * 2 : 64;
		struct pwf_cqe *nq = malloc(ncap * sizeof(*nq));

		if (!nq)
			return false;
		for (size_t i = 0; i < cq->q_count; i++)
			nq[i] = cq->q[(cq->q_head + i) % cq->q_cap];
		free(cq->q);
		cq->q = nq;
		cq->q_cap = ncap;
		cq->q_head = 0;
	}
	cq->q[(cq->q_head + cq->q_count) % cq->q_cap] = *e;
	cq->q_count++;
	return true;
}

static uint64_t wc_flags(const struct pw_wc *wc, struct pwf_op *op)
{
	switch (wc->opcode) {
	case PW_WC_RECV:
		return FI_RECV | FI_MSG |
		       ((wc->wc_flags & PW_WC_WITH_IMM) ? FI_REMOTE_CQ_DATA : 0);
	case PW_WC_RECV_RDMA_WITH_IMM:
		return FI_RMA | FI_REMOTE_WRITE | FI_REMOTE_CQ_DATA;
	default:
		return op->flags;
	}
}

/* Convert one completion; called with cq->lock held. */
static void complete_one(struct pwf_cq *cq, const struct pw_wc *wc)
{
	struct pwf_op *op = (struct pwf_op *)(uintptr_t)wc->wr_id;
	struct pwf_ep *ep = op->ep;
	struct pwf_cqe e;
	uint8_t cntr = op->cntr;
	bool report = op->report;

	if (wc->opcode == PW_WC_RECV_RDMA_WITH_IMM)
		cntr = PWF_CNTR_RECV;
	if (cntr != PWF_CNTR_NONE && ep->cntr[cntr])
		pwf_cntr_inc(ep->cntr[cntr], wc->status != PW_WC_SUCCESS);
	/* errors are always reported (fi_cq(3)), successes as asked */
	if ((report || wc->status != PW_WC_SUCCESS) && !cq->hidden && !ep->closing) {
		memset(&e, 0, sizeof(e));
		e.e.op_context = op->context;
		e.e.flags = wc_flags(wc, op);
		if (wc->opcode & PW_WC_RECV) {
			e.e.len = wc->byte_len;
			if (wc->wc_flags & PW_WC_WITH_IMM)
				e.e.data = wc->imm_data;
		} else {
			e.e.len = 0;
		}
		if (wc->status != PW_WC_SUCCESS) {
			e.err = pwf_wc_err(wc->status);
			e.prov_errno = (int)wc->status;
			e.e.len = op->len;
			e.e.buf = op->buf;
			if (e.err == FI_ETRUNC)
				e.olen = wc->byte_len > op->len ? wc->byte_len - op->len : 0;
		}
		if (!q_push(cq, &e))
			PWF_WARN(FI_LOG_CQ, "completion lost: out of memory\n");
	}
	pwf_op_put(op);
}

size_t pwf_cq_progress(struct pwf_cq *cq)
{
	struct pw_wc wc[PWF_POLL_BATCH];
	size_t n;
	int got;

	pthread_mutex_lock(&cq->lock);
	do {
		got = pw_poll_cq(cq->cq, PWF_POLL_BATCH, wc);
		for (int i = 0; i < got; i++)
			complete_one(cq, &wc[i]);
	} while (got == PWF_POLL_BATCH);
	n = cq->q_count;
	pthread_mutex_unlock(&cq->lock);
	return n;
}

static void write_entry(const struct pwf_cq *cq, void *dst, const struct pwf_cqe *e)
{
	switch (cq->format) {
	case FI_CQ_FORMAT_CONTEXT: {
		struct fi_cq_entry *c = dst;

		c->op_context = e->e.op_context;
		break;
	}
	case FI_CQ_FORMAT_MSG: {
		struct fi_cq_msg_entry *m = dst;

		m->op_context = e->e.op_context;
		m->flags = e->e.flags;
		m->len = e->e.len;
		break;
	}
	case FI_CQ_FORMAT_DATA: {
		struct fi_cq_data_entry *d = dst;

		d->op_context = e->e.op_context;
		d->flags = e->e.flags;
		d->len = e->e.len;
		d->buf = e->e.buf;
		d->data = e->e.data;
		break;
	}
	default:
		memcpy(dst, &e->e, sizeof(e->e));
		break;
	}
}

static ssize_t cq_take(struct pwf_cq *cq, void *buf, size_t count)
{
	size_t n = 0;

	pthread_mutex_lock(&cq->lock);
	while (n < count && cq->q_count) {
		struct pwf_cqe *e = &cq->q[cq->q_head];

		if (e->err)
			break;
		write_entry(cq, (char *)buf + n * cq->entry_size, e);
		cq->q_head = (cq->q_head + 1) % cq->q_cap;
		cq->q_count--;
		n++;
	}
	if (!n && cq->q_count) {
		pthread_mutex_unlock(&cq->lock);
		return -FI_EAVAIL;
	}
	pthread_mutex_unlock(&cq->lock);
	return n ? (ssize_t)n : -FI_EAGAIN;
}

static ssize_t cq_read(struct fid_cq *cq_fid, void *buf, size_t count)
{
	struct pwf_cq *cq = to_pwf_cq(cq_fid);

	if (!count)
		return 0;
	pwf_cq_progress(cq);
	return cq_take(cq, buf, count);
}

static ssize_t cq_readfrom(struct fid_cq *cq_fid, void *buf, size_t count,
			   fi_addr_t *src_addr)
{
	ssize_t n = cq_read(cq_fid, buf, count);

	/* MSG endpoints: the source is the connection's peer */
	for (ssize_t i = 0; src_addr && i < n; i++)
		src_addr[i] = FI_ADDR_NOTAVAIL;
	return n;
}

static ssize_t cq_readerr(struct fid_cq *cq_fid, struct fi_cq_err_entry *buf,
			  uint64_t flags)
{
	struct pwf_cq *cq = to_pwf_cq(cq_fid);
	struct pwf_cqe *e;

	pwf_cq_progress(cq);
	pthread_mutex_lock(&cq->lock);
	if (!cq->q_count || !cq->q[cq->q_head].err) {
		pthread_mutex_unlock(&cq->lock);
		return -FI_EAGAIN;
	}
	e = &cq->q[cq->q_head];
	cq->last_err = *e;
	cq->q_head = (cq->q_head + 1) % cq->q_cap;
	cq->q_count--;
	pthread_mutex_unlock(&cq->lock);
	e = &cq->last_err;
	buf->op_context = e->e.op_context;
	buf->flags = e->e.flags;
	buf->len = e->e.len;
	buf->buf = e->e.buf;
	buf->data = e->e.data;
	buf->tag = 0;
	buf->olen = e->olen;
	buf->err = e->err;
	buf->prov_errno = e->prov_errno;
	/* no provider error data: err_data_size 0 in either API version */
	if (!buf->err_data_size)
		buf->err_data = NULL;
	buf->err_data_size = 0;
	return 1;
}

int pwf_cq_wait_event(struct pwf_cq *cq, int timeout_ms)
{
	struct pw_cq *got;
	void *ctx;
	int ret;

	ret = pw_get_cq_event(cq->ch, &got, &ctx, timeout_ms);
	if (!ret)
		pw_ack_cq_events(got, 1);
	return ret;
}

/* Enough entries for the reader, or an error entry at the head? */
static bool cq_ready(struct pwf_cq *cq, size_t threshold)
{
	bool ready;

	pwf_cq_progress(cq);
	pthread_mutex_lock(&cq->lock);
	ready = cq->q_count >= threshold ||
		(cq->q_count && cq->q[cq->q_head].err);
	pthread_mutex_unlock(&cq->lock);
	return ready;
}

static ssize_t cq_sread(struct fid_cq *cq_fid, void *buf, size_t count,
			const void *cond, int timeout)
{
	struct pwf_cq *cq = to_pwf_cq(cq_fid);
	size_t threshold = 1;
	struct timespec t0;

	if (cq->wait_obj == FI_WAIT_NONE)
		return -FI_EINVAL;
	if (cond)
		threshold = *(const size_t *)cond;
	if (threshold < 1)
		threshold = 1;
	if (threshold > count)
		threshold = count;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct timespec now;
		int slice = PWF_SREAD_SLICE_MS;

		if (cq_ready(cq, threshold))
			return cq_take(cq, buf, count);
		/* fi_cq_signal, or time up: whatever is there (-FI_EAGAIN if none) */
		if (atomic_exchange_explicit(&cq->signaled, false, memory_order_acq_rel))
			return cq_take(cq, buf, count);
		pw_req_notify_cq(cq->cq, 0);
		/* as verbs: poll again after arming to catch what came before */
		if (cq_ready(cq, threshold))
			continue;
		if (timeout >= 0) {
			long ms;

			clock_gettime(CLOCK_MONOTONIC, &now);
			ms = (now.tv_sec - t0.tv_sec) * 1000 +
			     (now.tv_nsec - t0.tv_nsec) / 1000000;
			if (ms >= timeout)
				return cq_take(cq, buf, count);
			if (timeout - ms < slice)
				slice = (int)(timeout - ms);
		}
		pwf_cq_wait_event(cq, slice);
	}
}

static ssize_t cq_sreadfrom(struct fid_cq *cq_fid, void *buf, size_t count,
			    fi_addr_t *src_addr, const void *cond, int timeout)
{
	ssize_t n = cq_sread(cq_fid, buf, count, cond, timeout);

	for (ssize_t i = 0; src_addr && i < n; i++)
		src_addr[i] = FI_ADDR_NOTAVAIL;
	return n;
}

static int cq_signal(struct fid_cq *cq_fid)
{
	struct pwf_cq *cq = to_pwf_cq(cq_fid);
	uint64_t v = 1;

	atomic_store_explicit(&cq->signaled, true, memory_order_release);
	if (write(cq->efd, &v, sizeof(v)) < 0) {
		/* saturated: readable already */
	}
	return 0;
}

static const char *cq_strerror(struct fid_cq *cq, int prov_errno,
			       const void *err_data, char *buf, size_t len)
{
	const char *s = pw_wc_status_str((enum pw_wc_status)prov_errno);

	if (buf && len) {
		strncpy(buf, s, len - 1);
		buf[len - 1] = '\0';
		return buf;
	}
	return s;
}

int pwf_cq_trywait(struct pwf_cq *cq)
{
	uint64_t v;

	/* take any event already delivered, so that the fd goes quiet */
	while (!pwf_cq_wait_event(cq, 0))
		;
	while (read(cq->efd, &v, sizeof(v)) > 0)
		;
	if (pwf_cq_progress(cq))
		return -FI_EAGAIN;
	pw_req_notify_cq(cq->cq, 0);
	if (pwf_cq_progress(cq))
		return -FI_EAGAIN;
	return 0;
}

void pwf_cq_free(struct pwf_cq *cq)
{
	pw_destroy_cq(cq->cq);
	pw_destroy_comp_channel(cq->ch);
	if (cq->wait_fd >= 0)
		close(cq->wait_fd);
	if (cq->efd >= 0)
		close(cq->efd);
	free(cq->q);
	pthread_mutex_destroy(&cq->lock);
	atomic_fetch_sub_explicit(&cq->dom->refs, 1, memory_order_release);
	free(cq);
}

static int cq_close(struct fid *fid)
{
	struct pwf_cq *cq = pwf_container_of(fid, struct pwf_cq, cq_fid.fid);

	if (atomic_load_explicit(&cq->refs, memory_order_acquire))
		return -FI_EBUSY;
	pwf_cq_free(cq);
	return 0;
}

static int cq_control(struct fid *fid, int command, void *arg)
{
	struct pwf_cq *cq = pwf_container_of(fid, struct pwf_cq, cq_fid.fid);

	return pwf_getwait(command, cq->wait_obj, cq->wait_fd, arg);
}

static struct fi_ops cq_fi_ops = {
	.size = sizeof(struct fi_ops),
	.close = cq_close,
	.bind = pwf_no_bind,
	.control = cq_control,
	.ops_open = pwf_no_ops_open,
	.tostr = pwf_no_tostr,
	.ops_set = pwf_no_ops_set,
};

static struct fi_ops_cq cq_ops = {
	.size = sizeof(struct fi_ops_cq),
	.read = cq_read,
	.readfrom = cq_readfrom,
	.readerr = cq_readerr,
	.sread = cq_sread,
	.sreadfrom = cq_sreadfrom,
	.signal = cq_signal,
	.strerror = cq_strerror,
};

static struct pwf_cq *cq_new(struct pwf_domain *dom, size_t size,
			     enum fi_wait_obj wait_obj, void *context)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct pwf_cq *cq = calloc(1, sizeof(*cq));

	if (!cq)
		return NULL;
	cq->efd = cq->wait_fd = -1;
	cq->ch = pw_create_comp_channel(dom->fab->ctx);
	if (!cq->ch)
		goto err;
	cq->cq = pw_create_cq(dom->fab->ctx, size ? (int)size : 256, cq, cq->ch, 0);
	if (!cq->cq)
		goto err_ch;
	cq->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	cq->wait_fd = epoll_create1(EPOLL_CLOEXEC);
	if (cq->efd < 0 || cq->wait_fd < 0 ||
	    epoll_ctl(cq->wait_fd, EPOLL_CTL_ADD, cq->efd, &ev) ||
	    epoll_ctl(cq->wait_fd, EPOLL_CTL_ADD, cq->ch->fd, &ev))
		goto err_cq;
	cq->dom = dom;
	cq->wait_obj = wait_obj;
	cq->format = FI_CQ_FORMAT_CONTEXT;
	cq->entry_size = sizeof(struct fi_cq_entry);
	pthread_mutex_init(&cq->lock, NULL);
	atomic_init(&cq->refs, 0);
	atomic_init(&cq->signaled, false);
	cq->cq_fid.fid.fclass = FI_CLASS_CQ;
	cq->cq_fid.fid.context = context;
	cq->cq_fid.fid.ops = &cq_fi_ops;
	cq->cq_fid.ops = &cq_ops;
	atomic_fetch_add_explicit(&dom->refs, 1, memory_order_relaxed);
	return cq;

err_cq:
	if (cq->efd >= 0)
		close(cq->efd);
	if (cq->wait_fd >= 0)
		close(cq->wait_fd);
	pw_destroy_cq(cq->cq);
err_ch:
	pw_destroy_comp_channel(cq->ch);
err:
	free(cq);
	return NULL;
}

struct pwf_cq *pwf_cq_hidden(struct pwf_domain *dom)
{
	struct pwf_cq *cq = cq_new(dom, 0, FI_WAIT_FD, NULL);

	if (cq)
		cq->hidden = true;
	return cq;
}

int pwf_cq_open(struct fid_domain *domain, struct fi_cq_attr *attr,
		struct fid_cq **out, void *context)
{
	struct pwf_domain *dom = to_pwf_domain(domain);
	enum fi_wait_obj wait = FI_WAIT_NONE;
	struct pwf_cq *cq;
	size_t esz;

	if (!attr)
		return -FI_EINVAL;
	switch (attr->format) {
	case FI_CQ_FORMAT_UNSPEC:
	case FI_CQ_FORMAT_CONTEXT: esz = sizeof(struct fi_cq_entry); break;
	case FI_CQ_FORMAT_MSG: esz = sizeof(struct fi_cq_msg_entry); break;
	case FI_CQ_FORMAT_DATA: esz = sizeof(struct fi_cq_data_entry); break;
	case FI_CQ_FORMAT_TAGGED: esz = sizeof(struct fi_cq_tagged_entry); break;
	default: return -FI_ENOSYS;
	}
	switch (attr->wait_obj) {
	case FI_WAIT_NONE: wait = FI_WAIT_NONE; break;
	case FI_WAIT_UNSPEC:
	case FI_WAIT_FD: wait = FI_WAIT_FD; break;
	default: return -FI_ENOSYS;
	}
	if (attr->flags & ~(uint64_t)FI_AFFINITY)
		return -FI_EINVAL;
	if (attr->wait_cond != FI_CQ_COND_NONE && attr->wait_cond != FI_CQ_COND_THRESHOLD)
		return -FI_ENOSYS;
	if (attr->size > PW_MAX_CQE)
		return -FI_EINVAL;
	cq = cq_new(dom, attr->size, wait, context);
	if (!cq)
		return pwf_errno(errno ? -errno : -ENOMEM);
	cq->format = attr->format == FI_CQ_FORMAT_UNSPEC ? FI_CQ_FORMAT_CONTEXT : attr->format;
	cq->entry_size = esz;
	*out = &cq->cq_fid;
	return 0;
}
