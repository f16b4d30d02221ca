/* SPDX-License-Identifier: MIT */
/*
 * Counters. pagewire has none of its own: a counter counts the
 * completions of the endpoints bound to it as their CQs are drained, so
 * reading or waiting on it drains them (each endpoint direction bound to
 * a counter has a CQ, the provider's own when the application bound none).
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "pwf.h"

/* fi_cntr_add/set by another thread is seen by a waiter within this long */
#define PWF_CNTR_SLICE_MS 20

void pwf_cntr_inc(struct pwf_cntr *c, bool err)
{
	atomic_fetch_add_explicit(err ? &c->errs : &c->value, 1, memory_order_release);
}

int pwf_cntr_add_source(struct pwf_cntr *c, struct pwf_cq *cq)
{
	int ret = 0;

	pthread_mutex_lock(&c->lock);
	for (int i = 0; i < c->nsrc; i++)
		if (c->src[i] == cq)
			goto out;
	if (c->nsrc == PWF_CNTR_MAX_SRC)
		ret = -FI_ENOSPC;
	else
		c->src[c->nsrc++] = cq;
out:
	pthread_mutex_unlock(&c->lock);
	return ret;
}

void pwf_cntr_del_source(struct pwf_cntr *c, struct pwf_cq *cq)
{
	pthread_mutex_lock(&c->lock);
	for (int i = 0; i < c->nsrc; i++)
		if (c->src[i] == cq) {
			c->src[i] = c->src[--c->nsrc];
			break;
		}
	pthread_mutex_unlock(&c->lock);
}

static void progress(struct pwf_cntr *c)
{
	struct pwf_cq *src[PWF_CNTR_MAX_SRC];
	int n;

	pthread_mutex_lock(&c->lock);
	n = c->nsrc;
	for (int i = 0; i < n; i++)
		src[i] = c->src[i];
	/* the CQs stay alive: an endpoint unbinds them only under this lock */
	for (int i = 0; i < n; i++)
		pwf_cq_progress(src[i]);
	pthread_mutex_unlock(&c->lock);
}

static uint64_t cntr_read(struct fid_cntr *f)
{
	struct pwf_cntr *c = to_pwf_cntr(f);

	progress(c);
	return atomic_load_explicit(&c->value, memory_order_acquire);
}

static uint64_t cntr_readerr(struct fid_cntr *f)
{
	struct pwf_cntr *c = to_pwf_cntr(f);

	progress(c);
	return atomic_load_explicit(&c->errs, memory_order_acquire);
}

static void kick(struct pwf_cntr *c)
{
	uint64_t v = 1;

	if (write(c->efd, &v, sizeof(v)) < 0) {
		/* saturated: readable already */
	}
}

static int cntr_add(struct fid_cntr *f, uint64_t value)
{
	struct pwf_cntr *c = to_pwf_cntr(f);

	atomic_fetch_add_explicit(&c->value, value, memory_order_release);
	kick(c);
	return 0;
}

static int cntr_set(struct fid_cntr *f, uint64_t value)
{
	struct pwf_cntr *c = to_pwf_cntr(f);

	atomic_store_explicit(&c->value, value, memory_order_release);
	kick(c);
	return 0;
}

static int cntr_adderr(struct fid_cntr *f, uint64_t value)
{
	struct pwf_cntr *c = to_pwf_cntr(f);

	atomic_fetch_add_explicit(&c->errs, value, memory_order_release);
	kick(c);
	return 0;
}

static int cntr_seterr(struct fid_cntr *f, uint64_t value)
{
	struct pwf_cntr *c = to_pwf_cntr(f);

	atomic_store_explicit(&c->errs, value, memory_order_release);
	kick(c);
	return 0;
}

static int cntr_wait(struct fid_cntr *f, uint64_t threshold, int timeout)
{
	struct pwf_cntr *c = to_pwf_cntr(f);
	uint64_t errs0 = atomic_load_explicit(&c->errs, memory_order_acquire);
	struct timespec t0;

	if (c->wait_obj == FI_WAIT_NONE)
		return -FI_EINVAL;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct pwf_cq *first = NULL;
		int slice = PWF_CNTR_SLICE_MS;
		uint64_t v;

		progress(c);
		if (atomic_load_explicit(&c->value, memory_order_acquire) >= threshold)
			return 0;
		/* fi_cntr(3): an error completion ends the wait */
		if (atomic_load_explicit(&c->errs, memory_order_acquire) != errs0)
			return -FI_EAVAIL;
		if (timeout >= 0) {
			struct timespec now;
			long ms;

			clock_gettime(CLOCK_MONOTONIC, &now);
			ms = (now.tv_sec - t0.tv_sec) * 1000 +
			     (now.tv_nsec - t0.tv_nsec) / 1000000;
			if (ms >= timeout)
				return -FI_ETIMEDOUT;
			if (timeout - ms < slice)
				slice = (int)(timeout - ms);
		}
		while (read(c->efd, &v, sizeof(v)) > 0)
			;
		pthread_mutex_lock(&c->lock);
		for (int i = 0; i < c->nsrc; i++)
			pw_req_notify_cq(c->src[i]->cq, 0);
		if (c->nsrc == 1)
			first = c->src[0];
		pthread_mutex_unlock(&c->lock);
		progress(c);
		if (atomic_load_explicit(&c->value, memory_order_acquire) >= threshold)
			return 0;
		if (first) {
			/* one source: wait in pagewire, driving its engine */
			pwf_cq_wait_event(first, slice);
		} else {
			struct pollfd p[PWF_CNTR_MAX_SRC + 1];
			int n = 0;

			pthread_mutex_lock(&c->lock);
			for (int i = 0; i < c->nsrc; i++) {
				p[n].fd = c->src[i]->ch->fd;
				p[n++].events = POLLIN;
			}
			pthread_mutex_unlock(&c->lock);
			p[n].fd = c->efd;
			p[n++].events = POLLIN;
			poll(p, (nfds_t)n, slice);
			pthread_mutex_lock(&c->lock);
			for (int i = 0; i < c->nsrc; i++)
				while (!pwf_cq_wait_event(c->src[i], 0))
					;
			pthread_mutex_unlock(&c->lock);
		}
	}
}

static int cntr_close(struct fid *fid)
{
	struct pwf_cntr *c = pwf_container_of(fid, struct pwf_cntr, cntr_fid.fid);

	if (atomic_load_explicit(&c->refs, memory_order_acquire))
		return -FI_EBUSY;
	close(c->efd);
	pthread_mutex_destroy(&c->lock);
	atomic_fetch_sub_explicit(&c->dom->refs, 1, memory_order_release);
	free(c);
	return 0;
}

static struct fi_ops cntr_fi_ops = {
	.size = sizeof(struct fi_ops),
	.close = cntr_close,
	.bind = pwf_no_bind,
	.control = pwf_no_control,
	.ops_open = pwf_no_ops_open,
	.tostr = pwf_no_tostr,
	.ops_set = pwf_no_ops_set,
};

static struct fi_ops_cntr cntr_ops = {
	.size = sizeof(struct fi_ops_cntr),
	.read = cntr_read,
	.readerr = cntr_readerr,
	.add = cntr_add,
	.set = cntr_set,
	.wait = cntr_wait,
	.adderr = cntr_adderr,
	.seterr = cntr_seterr,
};

int pwf_cntr_open(struct fid_domain *domain, struct fi_cntr_attr *attr,
		  struct fid_cntr **out, void *context)
{
	struct pwf_domain *dom = to_pwf_domain(domain);
	struct pwf_cntr *c;

	if (attr && attr->events != FI_CNTR_EVENTS_COMP)
		return -FI_ENOSYS;
	if (attr && attr->wait_obj != FI_WAIT_NONE && attr->wait_obj != FI_WAIT_UNSPEC &&
	    attr->wait_obj != FI_WAIT_FD)
		return -FI_ENOSYS;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -FI_ENOMEM;
	c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->efd < 0) {
		free(c);
		return -FI_EMFILE;
	}
	c->wait_obj = attr && attr->wait_obj == FI_WAIT_NONE ? FI_WAIT_NONE : FI_WAIT_FD;
	c->dom = dom;
	pthread_mutex_init(&c->lock, NULL);
	atomic_init(&c->value, 0);
	atomic_init(&c->errs, 0);
	atomic_init(&c->refs, 0);
	c->cntr_fid.fid.fclass = FI_CLASS_CNTR;
	c->cntr_fid.fid.context = context;
	c->cntr_fid.fid.ops = &cntr_fi_ops;
	c->cntr_fid.ops = &cntr_ops;
	atomic_fetch_add_explicit(&dom->refs, 1, memory_order_relaxed);
	*out = &c->cntr_fid;
	return 0;
}
