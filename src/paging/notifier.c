/* SPDX-License-Identifier: MIT */
/*
 * The notifier (see notifier.h): one userfaultfd and one handler thread
 * per process, shared by every context, started by the first pw_open()
 * and stopped by the last pw_close().
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/context.h"
#include "mr/mr.h"
#include "paging/notifier.h"
#include "paging/pt.h"
#include "util/util.h"

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY	1
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW	_IO(0xAA, 0x00)
#endif

/*
 * No UFFD_FEATURE_EVENT_FORK: with it, fork() waits in the kernel for the
 * handler to read the FORK event while the C library holds its own locks
 * (malloc's among them) across the fork, and the handler, applying an
 * UNMAP read just before, may need one of them: a deadlock
 * (semantics.fork_vs_munmap). Without it the kernel drops the child's
 * registrations by itself, which is all the handler did with the event.
 */
#define PW_NOTIFY_FEATURES (UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMOVE | \
			    UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_PAGEFAULT_FLAG_WP)
/* shmem/memfd can be watched too when the kernel has it (>= 5.19) */
#define PW_NOTIFY_OPTIONAL UFFD_FEATURE_WP_HUGETLBFS_SHMEM

atomic_int pw_notify_placing;
atomic_bool pw_notify_busy;

/*
 * lock: protects everything below except the two fence atomics and
 * @events. Taken by pw_reg_mr/pw_dereg_mr (watch, unwatch), pw_open and
 * pw_close (get, put) and the handler while it applies events; nobody
 * holding it ever waits for an application thread, calls munmap, or
 * allocates with malloc once the handler runs (util.h, "Raw memory").
 */
static struct {
	pthread_mutex_t lock;
	int refs;		/* open contexts */
	bool tried;		/* the userfaultfd was tried (once per process) */
	atomic_bool on;		/* read without the lock (stats) */
	int uffd;
	int stop_fd;		/* eventfd: stop the handler */
	pthread_t thread;
	struct pw_mr_i *watched; /* explicit MRs, by mr->watch_next */
	atomic_uint_fast64_t events;
} nt = { .lock = PTHREAD_MUTEX_INITIALIZER, .uffd = -1, .stop_fd = -1 };

void pw_notify_wait_idle(void)
{
	while (atomic_load_explicit(&pw_notify_busy, memory_order_seq_cst))
		sched_yield();
}

bool pw_notifier_on(void)
{
	return atomic_load_explicit(&nt.on, memory_order_relaxed);
}

uint64_t pw_notifier_events(void)
{
	return atomic_load_explicit(&nt.events, memory_order_relaxed);
}

static uint64_t page_floor(uint64_t a)
{
	return a & ~(uint64_t)(PW_PT_PAGE_SIZE - 1);
}

static uint64_t page_ceil(uint64_t a)
{
	return a > UINT64_MAX - (PW_PT_PAGE_SIZE - 1) ? page_floor(a) :
	       page_floor(a + PW_PT_PAGE_SIZE - 1);
}

/*
 * [s, e) of the address space went away (munmap; the old range of an
 * mremap). Default: that part of every MR over it is dead for good, as
 * the safe choice of the 2008 proposal, and the owner is told; FOLLOW_VA
 * MRs only forget the pages, and the next access faults in whatever is
 * there.
 */
static void gone_locked(uint64_t s, uint64_t e, enum pw_event_type type)
{
	for (struct pw_mr_i *mr = nt.watched; mr; mr = mr->watch_next) {
		uint64_t a = PW_MAX(s, mr->start), b = PW_MIN(e, mr->end);

		if (a >= b)
			continue;
		if (!mr->follow_va) {
			if (pw_mr_kill_range(mr, a, b))
				pw_async_post_mr(mr->ibmr.context, type, mr,
						 a - mr->start, b - a);
		} else {
			atomic_store_explicit(&mr->rewatch, true,
					      memory_order_relaxed);
		}
		pw_mr_forget_range(mr, a, b);
		pw_notify_invalidated(mr, a, b);	/* NOTIFY: tell the peers */
	}
}

/* madvise(DONTNEED/REMOVE): the pages go, the mapping stays: refault */
static void removed_locked(uint64_t s, uint64_t e)
{
	for (struct pw_mr_i *mr = nt.watched; mr; mr = mr->watch_next) {
		uint64_t a = PW_MAX(s, mr->start), b = PW_MIN(e, mr->end);

		if (a < b) {
			pw_mr_forget_range(mr, a, b);
			pw_notify_invalidated(mr, a, b);
		}
	}
}

static void handle_locked(const struct uffd_msg *m)
{
	atomic_fetch_add_explicit(&nt.events, 1, memory_order_relaxed);
	switch (m->event) {
	case UFFD_EVENT_UNMAP:
		gone_locked(m->arg.remove.start, m->arg.remove.end,
			    PW_EVENT_MR_UNMAPPED);
		break;
	case UFFD_EVENT_REMOVE:
		removed_locked(m->arg.remove.start, m->arg.remove.end);
		break;
	case UFFD_EVENT_REMAP:
		/* the MR does not move with the pages: its old range is gone */
		gone_locked(m->arg.remap.from, m->arg.remap.from + m->arg.remap.len,
			    PW_EVENT_MR_REMAPPED);
		break;
	case UFFD_EVENT_FORK:
		/*
		 * The child's copy of the registrations: nothing of ours runs
		 * there. Closing its userfaultfd drops them (fork() waited
		 * for this read).
		 */
		close((int)m->arg.fork.ufd);
		break;
	default:
		break;	/* a WP fault cannot happen: nothing is protected */
	}
}

static void *notifier_main(void *arg)
{
	struct uffd_msg msgs[16];

	(void)arg;
	/* a name tools and tests can find (tests/unit/core/test_notifier.c) */
	pthread_setname_np(pthread_self(), "pw-notify");
	for (;;) {
		struct pollfd p[2] = { { .fd = nt.uffd, .events = POLLIN },
				       { .fd = nt.stop_fd, .events = POLLIN } };
		ssize_t n;

		if (poll(p, 2, -1) < 0)
			continue;	/* EINTR */
		if (p[1].revents)
			break;
		if (!(p[0].revents & POLLIN))
			continue;
		/* the fence (notifier.h): hold new accesses, drain the rest */
		atomic_store_explicit(&pw_notify_busy, true, memory_order_seq_cst);
		while (atomic_load_explicit(&pw_notify_placing, memory_order_seq_cst) > 0)
			sched_yield();
		/*
		 * Read and apply under nt.lock: munmap() returns once its
		 * event is read, and an MR registered right after it (over a
		 * new mapping there) must not get that event. Its
		 * registration waits for the lock until the event is applied.
		 * Reading never blocks (O_NONBLOCK), and no holder of nt.lock
		 * waits for anything an application thread holds.
		 */
		pthread_mutex_lock(&nt.lock);
		while ((n = read(nt.uffd, msgs, sizeof(msgs))) > 0)
			for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++)
				handle_locked(&msgs[i]);
		pthread_mutex_unlock(&nt.lock);
		atomic_store_explicit(&pw_notify_busy, false, memory_order_seq_cst);
	}
	return NULL;
}

static int open_uffd(void)
{
	int fd = (int)syscall(SYS_userfaultfd,
			      O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);

	if (fd < 0) {
		/* vm.unprivileged_userfaultfd=0 leaves the device node */
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);

		if (dev >= 0) {
			fd = ioctl(dev, USERFAULTFD_IOC_NEW,
				   O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
			close(dev);
		}
	}
	return fd < 0 ? -errno : fd;
}

/* Start the handler. Return 0 or -errno (the notifier stays off). */
static int start_locked(void)
{
	struct uffdio_api api = { .api = UFFD_API,
				  .features = PW_NOTIFY_FEATURES | PW_NOTIFY_OPTIONAL };
	int ret, fd;

	fd = open_uffd();
	if (fd < 0)
		return fd;
	if (ioctl(fd, UFFDIO_API, &api)) {
		/* the optional feature is unknown to older kernels */
		close(fd);
		fd = open_uffd();
		if (fd < 0)
			return fd;
		api.api = UFFD_API;
		api.features = PW_NOTIFY_FEATURES;
		if (ioctl(fd, UFFDIO_API, &api)) {
			ret = -errno;
			goto err_close;
		}
	}
	nt.stop_fd = eventfd(0, EFD_CLOEXEC);
	if (nt.stop_fd < 0) {
		ret = -errno;
		goto err_close;
	}
	nt.uffd = fd;
	ret = -pthread_create(&nt.thread, NULL, notifier_main, NULL);
	if (ret)
		goto err_stop;
	nt.on = true;
	return 0;

err_stop:
	close(nt.stop_fd);
	nt.stop_fd = -1;
	nt.uffd = -1;
err_close:
	close(fd);
	return ret;
}

/*
 * A forked child inherits our state but not our thread: it starts from
 * nothing (its copies of the parent's contexts are not usable, as with
 * verbs), and the inherited descriptor is the parent's userfaultfd.
 */
static void atfork_child(void)
{
	pthread_mutex_init(&nt.lock, NULL);
	if (nt.uffd >= 0)
		close(nt.uffd);
	if (nt.stop_fd >= 0)
		close(nt.stop_fd);
	nt.uffd = nt.stop_fd = -1;
	nt.refs = 0;
	nt.tried = false;
	nt.on = false;
	nt.watched = NULL;
	atomic_store(&pw_notify_placing, 0);
	atomic_store(&pw_notify_busy, false);
}

static void atfork_install(void)
{
	/*
	 * No prepare handler taking nt.lock: a fork() inside an application
	 * critical section must not wait for the handler's lock.
	 * pthread_atfork allocates, so it runs once, before nt.lock.
	 */
	pthread_atfork(NULL, NULL, atfork_child);
}

void pw_notifier_get(void)
{
	static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
	int ret = 0;

	pthread_once(&atfork_once, atfork_install);
	pthread_mutex_lock(&nt.lock);
	if (nt.refs++ == 0 && !nt.tried) {
		const char *e = getenv("PW_NOTIFIER");

		/* no handler runs yet: starting it may allocate under the lock */
		ret = e && !strcmp(e, "off") ? -ECANCELED : start_locked();
		nt.tried = true;
	}
	pthread_mutex_unlock(&nt.lock);
	if (ret)
		fprintf(stderr, "pagewire: notifier off (%s): ODP MRs work on "
			"faults and pw_mr_invalidate() alone; munmap, mremap "
			"and madvise of registered memory are not noticed\n",
			ret == -ECANCELED ? "PW_NOTIFIER=off" : strerror(-ret));
}

void pw_notifier_put(void)
{
	bool stop = false;
	uint64_t one = 1;

	pthread_mutex_lock(&nt.lock);
	if (nt.refs > 0 && --nt.refs == 0 && nt.on) {
		stop = true;
		nt.on = false;
	}
	pthread_mutex_unlock(&nt.lock);
	if (!stop)
		return;
	/* no MR is left (pw_close requires it), so no range is registered */
	if (write(nt.stop_fd, &one, sizeof(one)) != sizeof(one))
		abort();	/* an eventfd write of 1 cannot fail */
	pthread_join(nt.thread, NULL);
	pthread_mutex_lock(&nt.lock);
	close(nt.uffd);
	close(nt.stop_fd);
	nt.uffd = nt.stop_fd = -1;
	nt.tried = false;	/* a later pw_open() starts it again */
	pthread_mutex_unlock(&nt.lock);
}

static int uffd_range(unsigned long req, uint64_t s, uint64_t e)
{
	struct uffdio_register r = {
		.range = { .start = s, .len = e - s },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};
	struct uffdio_range u = { .start = s, .len = e - s };

	if (s >= e)
		return 0;
	if (req == UFFDIO_REGISTER)
		return ioctl(nt.uffd, UFFDIO_REGISTER, &r) ? -errno : 0;
	return ioctl(nt.uffd, UFFDIO_UNREGISTER, &u) ? -errno : 0;
}

/* Parse "start-end " (hex) at the head of a /proc/self/maps line. */
static bool maps_range(const char *l, const char *end, uint64_t *vs, uint64_t *ve)
{
	uint64_t v[2] = { 0, 0 };

	for (int k = 0; k < 2; k++) {
		int digits = 0;

		for (; l < end; l++, digits++) {
			int c = *l, d;

			if (c >= '0' && c <= '9')
				d = c - '0';
			else if (c >= 'a' && c <= 'f')
				d = c - 'a' + 10;
			else
				break;
			if (digits >= 16)
				return false;
			v[k] = v[k] << 4 | (uint64_t)d;
		}
		if (!digits || l >= end || *l != (k ? ' ' : '-'))
			return false;
		l++;
	}
	*vs = v[0];
	*ve = v[1];
	return true;
}

/*
 * The range has holes (kernels before 6.x refuse those) or nothing
 * mapped at all: register each mapping in it. Nothing mapped is nothing
 * to watch (docs/semantics.md: memory mapped into an ODP MR's range later
 * is not watched). Slow path: reads /proc/self/maps, with read(2) into a
 * stack buffer, not stdio: nt.lock is held, and stdio allocates (util.h,
 * "Raw memory").
 */
static int register_mapped(uint64_t s, uint64_t e)
{
	char buf[4096];
	size_t have = 0;
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	int ret = 0;

	if (fd < 0)
		return -errno;
	while (!ret) {
		ssize_t n = read(fd, buf + have, sizeof(buf) - have);
		char *l = buf, *nl;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = n < 0 ? -errno : 0;
			break;
		}
		have += (size_t)n;
		while (!ret && (nl = memchr(l, '\n', have - (size_t)(l - buf)))) {
			uint64_t vs, ve;

			if (maps_range(l, nl, &vs, &ve) && ve > s && vs < e)
				ret = uffd_range(UFFDIO_REGISTER, PW_MAX(s, vs),
						 PW_MIN(e, ve));
			l = nl + 1;
		}
		have -= (size_t)(l - buf);
		if (have == sizeof(buf))
			have = 0;	/* a line longer than the buffer: its tail is noise */
		memmove(buf, l, have);
	}
	close(fd);
	return ret;
}

int pw_notifier_watch(struct pw_mr_i *mr)
{
	int ret;

	if (mr->implicit)
		return 0;	/* follows the address space by definition */
	pthread_mutex_lock(&nt.lock);
	if (!nt.on) {
		pthread_mutex_unlock(&nt.lock);
		return 0;
	}
	ret = uffd_range(UFFDIO_REGISTER, page_floor(mr->start),
			 page_ceil(mr->end));
	if (ret)
		ret = register_mapped(page_floor(mr->start), page_ceil(mr->end));
	if (ret) {
		/*
		 * EINVAL: a mapping userfaultfd cannot watch (a regular
		 * file, VM_IO/PFNMAP); EPERM: not writable ever; EBUSY:
		 * another userfaultfd of the process has it.
		 */
		pthread_mutex_unlock(&nt.lock);
		return -EOPNOTSUPP;
	}
	mr->watched = true;
	mr->watch_next = nt.watched;
	nt.watched = mr;
	pthread_mutex_unlock(&nt.lock);
	return 0;
}

/*
 * Unregister what no other watched MR still covers (ranges of several
 * MRs may overlap; registering twice is one registration).
 */
static void unregister_uncovered_locked(uint64_t s, uint64_t e)
{
	uint64_t lo[64], hi[64];
	int n = 1;

	lo[0] = s;
	hi[0] = e;
	for (struct pw_mr_i *o = nt.watched; o && n; o = o->watch_next) {
		uint64_t os = page_floor(o->start), oe = page_ceil(o->end);

		for (int i = 0; i < n; i++) {
			if (oe <= lo[i] || os >= hi[i])
				continue;
			if (os > lo[i] && oe < hi[i] && n < 64) {
				/* split */
				lo[n] = oe;
				hi[n++] = hi[i];
				hi[i] = os;
			} else if (os <= lo[i] && oe >= hi[i]) {
				lo[i] = hi[i];	/* fully covered */
			} else if (os <= lo[i]) {
				lo[i] = PW_MIN(oe, hi[i]);
			} else {
				hi[i] = PW_MAX(os, lo[i]);
			}
		}
	}
	for (int i = 0; i < n; i++)
		(void)uffd_range(UFFDIO_UNREGISTER, lo[i], hi[i]);
}

void pw_notifier_unwatch(struct pw_mr_i *mr)
{
	if (!mr->watched)
		return;
	pthread_mutex_lock(&nt.lock);
	for (struct pw_mr_i **pp = &nt.watched; *pp; pp = &(*pp)->watch_next)
		if (*pp == mr) {
			*pp = mr->watch_next;
			break;
		}
	mr->watched = false;
	/* gone ranges are unregistered already (ENOMEM there: ignored) */
	if (nt.uffd >= 0)
		unregister_uncovered_locked(page_floor(mr->start),
					    page_ceil(mr->end));
	pthread_mutex_unlock(&nt.lock);
}

/*
 * FOLLOW_VA: after part of the MR was unmapped, a new mapping there is
 * not registered yet. Called by the fault worker once it populated
 * [s, e): register that range again (an error only means it stays
 * unwatched, which is what FOLLOW_VA accepted).
 */
void pw_notifier_rewatch(struct pw_mr_i *mr, uint64_t s, uint64_t e)
{
	pthread_mutex_lock(&nt.lock);
	if (nt.on && mr->watched)
		(void)uffd_range(UFFDIO_REGISTER, page_floor(s), page_ceil(e));
	pthread_mutex_unlock(&nt.lock);
}
