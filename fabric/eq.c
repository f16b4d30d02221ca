/* SPDX-License-Identifier: MIT */
/*
 * Event queues: a software queue per EQ, fed by the fabric's CM pump and
 * by fi_eq_write. Error entries wait at their place in the queue (read
 * returns -FI_EAVAIL until fi_eq_readerr takes them), as fi_eq(3) says.
 * The wait fd is an epoll set of the queue's eventfd and the fabric's CM
 * channel, so that a thread blocked on it wakes for events routed to any
 * EQ; the read that follows routes them.
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

struct pwf_eq_entry *pwf_eq_entry_new(size_t len)
{
	return calloc(1, sizeof(struct pwf_eq_entry) + len);
}

static void entry_free(struct pwf_eq_entry *e)
{
	if (!e)
		return;
	if (e->info) {
		/* a request nobody read: refuse it so the client hears */
		struct pwf_connreq *cr = e->info->handle ?
			pwf_container_of(e->info->handle, struct pwf_connreq, fid) : NULL;

		if (cr && cr->req)
			pw_reject(cr->req, NULL, 0);
		free(cr);
		e->info->handle = NULL;
		fi_freeinfo(e->info);
	}
	free(e);
}

static void efd_set(struct pwf_eq *eq, bool on)
{
	uint64_t v = 1;

	if (on) {
		if (write(eq->efd, &v, sizeof(v)) < 0) {
			/* eventfd saturated: it is readable anyway */
		}
	} else {
		while (read(eq->efd, &v, sizeof(v)) > 0)
			;
	}
}

void pwf_eq_push(struct pwf_eq *eq, struct pwf_eq_entry *e)
{
	pthread_mutex_lock(&eq->lock);
	e->next = NULL;
	if (eq->tail)
		eq->tail->next = e;
	else
		eq->head = e;
	eq->tail = e;
	efd_set(eq, true);
	pthread_mutex_unlock(&eq->lock);
}

void pwf_eq_purge(struct pwf_eq *eq, fid_t fid)
{
	struct pwf_eq_entry **pp, *e, *dead = NULL;

	pthread_mutex_lock(&eq->lock);
	eq->tail = NULL;
	for (pp = &eq->head; (e = *pp);) {
		if (e->fid == fid) {
			*pp = e->next;
			e->next = dead;
			dead = e;
		} else {
			eq->tail = e;
			pp = &e->next;
		}
	}
	if (!eq->head)
		efd_set(eq, false);
	pthread_mutex_unlock(&eq->lock);
	while ((e = dead)) {
		dead = e->next;
		entry_free(e);
	}
}

/* Copy the head entry out; -FI_EAGAIN when none, -FI_EAVAIL for an error. */
static ssize_t eq_take(struct pwf_eq *eq, uint32_t *event, void *buf,
		       size_t len, uint64_t flags)
{
	struct pwf_eq_entry *e;
	ssize_t ret;

	pthread_mutex_lock(&eq->lock);
	/* the err_data given out by the last readerr lives until this read */
	entry_free(eq->last_err);
	eq->last_err = NULL;
	e = eq->head;
	if (!e) {
		efd_set(eq, false);
		pthread_mutex_unlock(&eq->lock);
		return -FI_EAGAIN;
	}
	if (e->err) {
		pthread_mutex_unlock(&eq->lock);
		return -FI_EAVAIL;
	}
	if (event)
		*event = e->event;
	if (e->event == FI_CONNREQ || e->event == FI_CONNECTED ||
	    e->event == FI_SHUTDOWN) {
		struct fi_eq_cm_entry *cm = buf;
		size_t need = sizeof(*cm);

		if (len < need) {
			pthread_mutex_unlock(&eq->lock);
			return -FI_ETOOSMALL;
		}
		cm->fid = e->fid;
		cm->info = e->info;
		ret = (ssize_t)(need + (e->len < len - need ? e->len : len - need));
		memcpy(cm->data, e->buf, (size_t)ret - need);
		if (!(flags & FI_PEEK))
			e->info = NULL;	/* the reader owns it now */
	} else {
		/* fi_eq_write's bytes, or a struct fi_eq_entry */
		if (len < e->len) {
			pthread_mutex_unlock(&eq->lock);
			return -FI_ETOOSMALL;
		}
		memcpy(buf, e->buf, e->len);
		ret = (ssize_t)e->len;
	}
	if (!(flags & FI_PEEK)) {
		eq->head = e->next;
		if (!eq->head) {
			eq->tail = NULL;
			efd_set(eq, false);
		}
		pthread_mutex_unlock(&eq->lock);
		entry_free(e);
	} else {
		pthread_mutex_unlock(&eq->lock);
	}
	return ret;
}

static ssize_t eq_read(struct fid_eq *eq_fid, uint32_t *event, void *buf,
		       size_t len, uint64_t flags)
{
	struct pwf_eq *eq = to_pwf_eq(eq_fid);

	if (flags & ~(uint64_t)FI_PEEK)
		return -FI_EINVAL;
	pwf_fabric_pump_cm(eq->fab);
	return eq_take(eq, event, buf, len, flags);
}

static ssize_t eq_readerr(struct fid_eq *eq_fid, struct fi_eq_err_entry *buf,
			  uint64_t flags)
{
	struct pwf_eq *eq = to_pwf_eq(eq_fid);
	struct pwf_eq_entry *e;
	size_t room;
	void *user_data;

	pwf_fabric_pump_cm(eq->fab);
	pthread_mutex_lock(&eq->lock);
	e = eq->head;
	if (!e || !e->err) {
		pthread_mutex_unlock(&eq->lock);
		return -FI_EAGAIN;
	}
	/*
	 * fi_eq(3), API >= 1.5: a caller's err_data buffer of err_data_size
	 * bytes is filled; else err_data points at the provider's copy.
	 */
	user_data = buf->err_data;
	room = buf->err_data_size;
	buf->fid = e->fid;
	buf->context = e->context;
	buf->data = e->data;
	buf->err = e->err;
	buf->prov_errno = e->prov_errno;
	if (room && user_data) {
		buf->err_data_size = e->len < room ? e->len : room;
		memcpy(user_data, e->buf, buf->err_data_size);
	} else {
		buf->err_data = e->len ? e->buf : NULL;
		buf->err_data_size = e->len;
	}
	if (!(flags & FI_PEEK)) {
		eq->head = e->next;
		if (!eq->head) {
			eq->tail = NULL;
			efd_set(eq, false);
		}
		entry_free(eq->last_err);
		eq->last_err = e;
	}
	pthread_mutex_unlock(&eq->lock);
	return sizeof(*buf);
}

static ssize_t eq_write(struct fid_eq *eq_fid, uint32_t event, const void *buf,
			size_t len, uint64_t flags)
{
	struct pwf_eq *eq = to_pwf_eq(eq_fid);
	struct pwf_eq_entry *e;

	if (!buf || !len)
		return -FI_EINVAL;
	e = pwf_eq_entry_new(len);
	if (!e)
		return -FI_ENOMEM;
	e->event = event;
	e->len = len;
	memcpy(e->buf, buf, len);
	if (len >= sizeof(fid_t))
		memcpy(&e->fid, buf, sizeof(fid_t));
	pwf_eq_push(eq, e);
	return (ssize_t)len;
}

static ssize_t eq_sread(struct fid_eq *eq_fid, uint32_t *event, void *buf,
			size_t len, int timeout, uint64_t flags)
{
	struct pwf_eq *eq = to_pwf_eq(eq_fid);
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct pollfd p = { .fd = eq->wait_fd, .events = POLLIN };
		struct timespec now;
		ssize_t ret;
		int left = -1;

		ret = eq_read(eq_fid, event, buf, len, flags);
		if (ret != -FI_EAGAIN)
			return ret;
		if (timeout >= 0) {
			long ms;

			clock_gettime(CLOCK_MONOTONIC, &now);
			ms = (now.tv_sec - t0.tv_sec) * 1000 +
			     (now.tv_nsec - t0.tv_nsec) / 1000000;
			if (ms >= timeout)
				return -FI_EAGAIN;
			left = timeout - (int)ms;
		}
		if (poll(&p, 1, left) < 0 && errno != EINTR)
			return -FI_EOTHER;
	}
}

static const char *eq_strerror(struct fid_eq *eq, int prov_errno,
			       const void *err_data, char *buf, size_t len)
{
	const char *s = fi_strerror(prov_errno);

	if (buf && len) {
		strncpy(buf, s, len - 1);
		buf[len - 1] = '\0';
		return buf;
	}
	return s;
}

int pwf_eq_trywait(struct pwf_eq *eq)
{
	pwf_fabric_pump_cm(eq->fab);
	pthread_mutex_lock(&eq->lock);
	if (eq->head) {
		pthread_mutex_unlock(&eq->lock);
		return -FI_EAGAIN;
	}
	efd_set(eq, false);
	pthread_mutex_unlock(&eq->lock);
	return 0;
}

static int eq_close(struct fid *fid)
{
	struct pwf_eq *eq = pwf_container_of(fid, struct pwf_eq, eq_fid.fid);
	struct pwf_fabric *fab = eq->fab;

	while (eq->head) {
		struct pwf_eq_entry *n = eq->head->next;

		entry_free(eq->head);
		eq->head = n;
	}
	entry_free(eq->last_err);
	close(eq->wait_fd);
	close(eq->efd);
	pthread_mutex_destroy(&eq->lock);
	atomic_fetch_sub_explicit(&fab->refs, 1, memory_order_release);
	free(eq);
	return 0;
}

static int eq_control(struct fid *fid, int command, void *arg)
{
	struct pwf_eq *eq = pwf_container_of(fid, struct pwf_eq, eq_fid.fid);

	return pwf_getwait(command, eq->wait_obj, eq->wait_fd, arg);
}

static struct fi_ops eq_fi_ops = {
	.size = sizeof(struct fi_ops),
	.close = eq_close,
	.bind = pwf_no_bind,
	.control = eq_control,
	.ops_open = pwf_no_ops_open,
	.tostr = pwf_no_tostr,
	.ops_set = pwf_no_ops_set,
};

static struct fi_ops_eq eq_ops = {
	.size = sizeof(struct fi_ops_eq),
	.read = eq_read,
	.readerr = eq_readerr,
	.write = eq_write,
	.sread = eq_sread,
	.strerror = eq_strerror,
};

int pwf_eq_open(struct fid_fabric *fabric, struct fi_eq_attr *attr,
		struct fid_eq **out, void *context)
{
	struct pwf_fabric *fab = to_pwf_fabric(fabric);
	struct epoll_event ev = { .events = EPOLLIN };
	struct pwf_eq *eq;

	if (attr && attr->wait_obj != FI_WAIT_NONE && attr->wait_obj != FI_WAIT_UNSPEC &&
	    attr->wait_obj != FI_WAIT_FD)
		return -FI_ENOSYS;
	if (attr && attr->flags & ~(uint64_t)FI_WRITE)
		return -FI_EINVAL;
	eq = calloc(1, sizeof(*eq));
	if (!eq)
		return -FI_ENOMEM;
	eq->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	eq->wait_fd = epoll_create1(EPOLL_CLOEXEC);
	if (eq->efd < 0 || eq->wait_fd < 0 ||
	    epoll_ctl(eq->wait_fd, EPOLL_CTL_ADD, eq->efd, &ev) ||
	    epoll_ctl(eq->wait_fd, EPOLL_CTL_ADD, fab->cmch->fd, &ev)) {
		if (eq->efd >= 0)
			close(eq->efd);
		if (eq->wait_fd >= 0)
			close(eq->wait_fd);
		free(eq);
		return -FI_EMFILE;
	}
	eq->wait_obj = attr && attr->wait_obj == FI_WAIT_NONE ? FI_WAIT_NONE : FI_WAIT_FD;
	eq->fab = fab;
	pthread_mutex_init(&eq->lock, NULL);
	eq->eq_fid.fid.fclass = FI_CLASS_EQ;
	eq->eq_fid.fid.context = context;
	eq->eq_fid.fid.ops = &eq_fi_ops;
	eq->eq_fid.ops = &eq_ops;
	atomic_fetch_add_explicit(&fab->refs, 1, memory_order_relaxed);
	*out = &eq->eq_fid;
	return 0;
}
