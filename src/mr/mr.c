/* SPDX-License-Identifier: MIT */
/*
 * Memory region registration: pinned (the 2008 baseline: populate + mlock,
 * bounded by RLIMIT_MEMLOCK) and on-demand (the 2008 proposal: "the mapping
 * would have to be on demand"; O(1), touches nothing).
 */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdatomic.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/context.h"
#include "mr/mr.h"
#include "paging/notifier.h"
#include "paging/pt.h"
#include "util/util.h"

#define PW_ACCESS_ALL (PW_ACCESS_LOCAL_WRITE | PW_ACCESS_REMOTE_WRITE | \
		       PW_ACCESS_REMOTE_READ | PW_ACCESS_REMOTE_ATOMIC | \
		       PW_ACCESS_ON_DEMAND | PW_ACCESS_ODP_FOLLOW_VA)

/* The kernel skips RLIMIT_MEMLOCK for CAP_IPC_LOCK, and so do we. */
static bool has_ipc_lock(void)
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct data[2];

	memset(data, 0, sizeof(data));
	if (syscall(SYS_capget, &hdr, data) != 0)
		return false;
	return data[CAP_IPC_LOCK / 32].effective & (1u << (CAP_IPC_LOCK % 32));
}

/* Bytes this process has locked now (VmLck), or 0 if unknown. */
static uint64_t locked_bytes(void)
{
	char line[256];
	uint64_t kb = 0;
	FILE *f = fopen("/proc/self/status", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmLck: %lu kB", &kb) == 1)
			break;
	fclose(f);
	return kb * 1024;
}

static uint64_t page_floor(uint64_t a)
{
	return a & ~((uint64_t)sysconf(_SC_PAGESIZE) - 1);
}

static uint64_t page_ceil(uint64_t a)
{
	uint64_t ps = (uint64_t)sysconf(_SC_PAGESIZE);

	return (a + ps - 1) & ~(ps - 1);
}

/*
 * mlock is not reference counted and registering overlapping MRs is legal,
 * so both the RLIMIT_MEMLOCK check and munlock must only consider the pages
 * of [s, e) that no other pinned MR covers. Calls @fn on each such piece.
 */
static void for_each_uncovered_locked(struct pw_mr_i *self, uint64_t s,
				      uint64_t e, struct pw_mr_i *from,
				      void (*fn)(uint64_t, uint64_t, void *),
				      void *arg)
{
	for (struct pw_mr_i *o = from; o; o = o->pin_next) {
		uint64_t os, oe;

		if (o == self)
			continue;
		os = page_floor(o->start);
		oe = page_ceil(o->end);
		if (oe <= s || os >= e)
			continue;
		if (s < os)
			for_each_uncovered_locked(self, s, os, o->pin_next, fn, arg);
		if (oe < e)
			for_each_uncovered_locked(self, oe, e, o->pin_next, fn, arg);
		return;
	}
	if (e > s)
		fn(s, e, arg);
}

static void count_piece(uint64_t s, uint64_t e, void *arg)
{
	*(uint64_t *)arg += e - s;
}

/* The raw syscall: sanitizer runtimes replace the libc wrappers with no-ops. */
static void munlock_piece(uint64_t s, uint64_t e, void *arg)
{
	char line[512];
	FILE *f;

	if (syscall(SYS_munlock, (void *)(uintptr_t)s, (size_t)(e - s)) == 0 ||
	    errno != ENOMEM)
		return;
	/*
	 * munlock stops at a hole: part of the MR was unmapped (the notifier
	 * made it dead). Unlock each mapping still there; a rare path.
	 */
	f = fopen("/proc/self/maps", "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long vs, ve;

		if (sscanf(line, "%llx-%llx", &vs, &ve) != 2 || ve <= s || vs >= e)
			continue;
		vs = PW_MAX((uint64_t)vs, s);
		ve = PW_MIN((uint64_t)ve, e);
		syscall(SYS_munlock, (void *)(uintptr_t)vs, (size_t)(ve - vs));
	}
	fclose(f);
}

/* Populate and lock @mr. Called with ctx->obj_lock held, @mr not yet listed. */
static int pin_range_locked(struct pw_context *ctx, struct pw_mr_i *mr)
{
	uint64_t s = page_floor(mr->start), e = page_ceil(mr->end);
	uint64_t len = e - s, added = 0;
	struct rlimit rl;

	for_each_uncovered_locked(mr, s, e, ctx->pinned, count_piece, &added);
	if (!has_ipc_lock() && getrlimit(RLIMIT_MEMLOCK, &rl) == 0 &&
	    rl.rlim_cur != RLIM_INFINITY) {
		uint64_t cur = locked_bytes();

		if (cur + added > rl.rlim_cur) {
			pw_set_error("pinned registration of %lu bytes exceeds RLIMIT_MEMLOCK "
				     "(%lu bytes, %lu already locked); raise `ulimit -l` or "
				     "register with PW_ACCESS_ON_DEMAND",
				     (unsigned long)len, (unsigned long)rl.rlim_cur,
				     (unsigned long)cur);
			return -ENOMEM;
		}
	}
	/*
	 * mlock populates the range (breaking COW on writable mappings). It is
	 * called as a raw syscall because sanitizer runtimes stub out the libc
	 * wrapper.
	 */
	if (syscall(SYS_mlock, (void *)(uintptr_t)s, (size_t)len) != 0) {
		int e2 = errno;

		/* mlock stops at the first hole: unlock what it did lock */
		for_each_uncovered_locked(mr, s, e, ctx->pinned, munlock_piece, NULL);
		if (e2 == ENOMEM) {
			pw_set_error("pinned registration: range %#lx+%lu is not fully mapped",
				     (unsigned long)s, (unsigned long)len);
			return -EFAULT;
		}
		pw_set_error("pinned registration of %lu bytes failed (%s); RLIMIT_MEMLOCK "
			     "bounds pinned memory, consider PW_ACCESS_ON_DEMAND",
			     (unsigned long)len, strerror(e2));
		return e2 == EPERM || e2 == EAGAIN ? -ENOMEM : -e2;
	}
	return 0;
}

static void unpin(struct pw_context *ctx, struct pw_mr_i *mr)
{
	pthread_mutex_lock(&ctx->obj_lock);
	for (struct pw_mr_i **pp = &ctx->pinned; *pp; pp = &(*pp)->pin_next)
		if (*pp == mr) {
			*pp = mr->pin_next;
			break;
		}
	for_each_uncovered_locked(mr, page_floor(mr->start), page_ceil(mr->end),
				  ctx->pinned, munlock_piece, NULL);
	pthread_mutex_unlock(&ctx->obj_lock);
}

struct pw_mr *pw_reg_mr(struct pw_pd *ibpd, void *addr, size_t length,
			unsigned int access)
{
	struct pw_context *ctx;
	struct pw_mr_i *mr;
	bool odp = access & PW_ACCESS_ON_DEMAND;
	bool implicit = addr == NULL && length == SIZE_MAX;
	int ret;

	pw_clear_error();
	if (!ibpd || (access & ~PW_ACCESS_ALL) || length == 0) {
		pw_set_error("pw_reg_mr: invalid PD, access flags 0x%x or length 0", access);
		errno = EINVAL;
		return NULL;
	}
	if ((access & (PW_ACCESS_REMOTE_WRITE | PW_ACCESS_REMOTE_ATOMIC)) &&
	    !(access & PW_ACCESS_LOCAL_WRITE)) {
		pw_set_error("pw_reg_mr: REMOTE_WRITE/REMOTE_ATOMIC require LOCAL_WRITE");
		errno = EINVAL;
		return NULL;
	}
	if (implicit && !odp) {
		pw_set_error("pw_reg_mr: implicit registration (NULL, SIZE_MAX) requires PW_ACCESS_ON_DEMAND");
		errno = EINVAL;
		return NULL;
	}
	if (!implicit && (uint64_t)(uintptr_t)addr + length < (uint64_t)(uintptr_t)addr) {
		pw_set_error("pw_reg_mr: range wraps around the address space");
		errno = EINVAL;
		return NULL;
	}
	ctx = ibpd->context;
	mr = calloc(1, sizeof(*mr));
	if (!mr) {
		errno = ENOMEM;
		return NULL;
	}
	mr->ibmr.context = ctx;
	mr->ibmr.pd = ibpd;
	mr->ibmr.addr = addr;
	mr->ibmr.length = length;
	mr->ibmr.access = access;
	mr->implicit = implicit;
	mr->pinned = !odp;
	mr->start = implicit ? 0 : (uint64_t)(uintptr_t)addr;
	mr->end = implicit ? UINT64_MAX : mr->start + length;
	mr->follow_va = access & PW_ACCESS_ODP_FOLLOW_VA;

	if (odp) {
		/* O(1): only the root node; the tree grows as pages fault in */
		mr->pt = pw_pt_create(mr->start, implicit ? 0 : length, implicit);
		if (!mr->pt) {
			ret = -errno;
			pw_set_error("pw_reg_mr: no memory for the ODP page table");
			goto err_free;
		}
	}
	/* the notifier must see munmap/mremap/madvise of this range */
	ret = pw_notifier_watch(mr);
	if (ret == -EOPNOTSUPP && !mr->follow_va) {
		pw_set_error("pw_reg_mr: userfaultfd cannot watch this memory (a regular file's "
			     "mapping?), so its munmap would go unnoticed; register it with "
			     "PW_ACCESS_ODP_FOLLOW_VA to accept that accesses follow the address");
		goto err_free;
	}
	if (mr->pinned) {
		pthread_mutex_lock(&ctx->obj_lock);
		ret = pin_range_locked(ctx, mr);
		if (!ret) {
			mr->pin_next = ctx->pinned;
			ctx->pinned = mr;
		}
		pthread_mutex_unlock(&ctx->obj_lock);
		if (ret)
			goto err_unwatch;
	}
	ret = pw_keytable_insert(&ctx->keys, mr);
	if (ret)
		goto err_unpin;
	if (mr->pt) {
		/* the budget counts and reclaims its pages (paging/budget.h) */
		pthread_mutex_lock(&ctx->obj_lock);
		pw_budget_add_mr_locked(ctx, mr);
		pthread_mutex_unlock(&ctx->obj_lock);
	}
	atomic_fetch_add(&to_pd(ibpd)->users, 1);
	return &mr->ibmr;

err_unpin:
	if (mr->pinned)
		unpin(ctx, mr);
err_unwatch:
	pw_notifier_unwatch(mr);
err_free:
	pw_pt_destroy(mr->pt);
	pw_mr_free_dead(mr);	/* an unmap may have come in meanwhile */
	free(mr);
	errno = -ret;
	return NULL;
}

/*
 * Dead sets are raw memory, not malloc's: the notifier's handler grows
 * them while an application thread may hold malloc's lock and wait for
 * the handler (util.h, "Raw memory").
 */
static size_t dead_bytes(unsigned int cap)
{
	return sizeof(struct pw_dead_set) + cap * sizeof(struct pw_dead_range);
}

static void pw_dead_free(struct pw_dead_set *d)
{
	while (d && d != PW_DEAD_ALL) {
		struct pw_dead_set *older = d->older;

		pw_raw_free(d, dead_bytes(d->cap));
		d = older;
	}
}

bool pw_mr_kill_range(struct pw_mr_i *mr, uint64_t a, uint64_t b)
{
	struct pw_dead_set *d = atomic_load_explicit(&mr->dead, memory_order_relaxed);
	unsigned int n;

	if (d == PW_DEAD_ALL)
		return false;
	n = d ? atomic_load_explicit(&d->n, memory_order_relaxed) : 0;

	for (unsigned int i = 0; i < n; i++)
		if (a >= atomic_load_explicit(&d->r[i].start, memory_order_relaxed) &&
		    b <= atomic_load_explicit(&d->r[i].end, memory_order_relaxed))
			return false;	/* already dead */
	if (!d || n == d->cap) {
		unsigned int cap = d ? d->cap * 2 : 8;
		struct pw_dead_set *nd = cap > (1u << 24) ? NULL :
					 pw_raw_alloc(dead_bytes(cap));

		if (!nd) {
			/* no memory to record it: all of the MR, never a miss */
			mr->dead_retired = d;	/* readers may still be in it */
			atomic_store_explicit(&mr->dead, PW_DEAD_ALL, memory_order_release);
			return true;
		}
		/* the rest of the last page is room too */
		nd->cap = (unsigned int)((pw_raw_size(dead_bytes(cap)) - sizeof(*nd)) /
					 sizeof(nd->r[0]));
		nd->older = d;
		for (unsigned int i = 0; i < n; i++) {
			atomic_init(&nd->r[i].start, atomic_load(&d->r[i].start));
			atomic_init(&nd->r[i].end, atomic_load(&d->r[i].end));
		}
		atomic_init(&nd->r[n].start, a);
		atomic_init(&nd->r[n].end, b);
		atomic_init(&nd->n, n + 1);
		atomic_store_explicit(&mr->dead, nd, memory_order_release);
		return true;
	}
	atomic_store_explicit(&d->r[n].start, a, memory_order_relaxed);
	atomic_store_explicit(&d->r[n].end, b, memory_order_relaxed);
	atomic_store_explicit(&d->n, n + 1, memory_order_release);
	return true;
}

void pw_mr_free_dead(struct pw_mr_i *mr)
{
	pw_dead_free(atomic_load_explicit(&mr->dead, memory_order_relaxed));
	pw_dead_free(mr->dead_retired);
}

void pw_mr_forget_range(struct pw_mr_i *mr, uint64_t a, uint64_t b)
{
	if (!mr->pt || a >= b)
		return;
	pw_pt_invalidate(mr->pt, a, b - a);
	pw_pt_lock(mr->pt);
	mr->anon_start = mr->anon_end = 0;	/* the mapping may change */
	pw_pt_unlock(mr->pt);
}

int pw_mr_invalidate(struct pw_mr *ibmr, uint64_t offset, uint64_t len)
{
	struct pw_mr_i *mr;
	uint64_t a;

	if (!ibmr)
		return -EINVAL;
	mr = to_mr(ibmr);
	if (!mr->pt || !len) {
		pw_set_error("pw_mr_invalidate: %s", !len ? "length 0" :
			     "not an on-demand MR (nothing to invalidate)");
		return -EINVAL;
	}
	a = mr->implicit ? offset : mr->start + offset;
	/* bounds only: a dead range may be invalidated too (a no-op) */
	if ((!mr->implicit && offset > mr->end - mr->start) ||
	    a > UINT64_MAX - len ||
	    (!mr->implicit && (a < mr->start || len > mr->end - a))) {
		pw_set_error("pw_mr_invalidate: [%#" PRIx64 ", +%" PRIu64
			     ") is outside the MR", offset, len);
		return -EINVAL;
	}
	/*
	 * Clear, then wait for the placement steps in progress: a step takes
	 * its use of the MR before it checks the table (rx.c dst_iov), so a
	 * step that saw the old entries is still counted here, and one that
	 * starts later sees them cleared (both sides fence, seq_cst).
	 */
	pw_mr_forget_range(mr, a, a + len);
	pw_notify_invalidated(mr, a, a + len);	/* NOTIFY: tell the peers */
	atomic_thread_fence(memory_order_seq_cst);
	while (atomic_load_explicit(&mr->uses, memory_order_acquire) > 0)
		sched_yield();
	return 0;
}

int pw_dereg_mr(struct pw_mr *ibmr)
{
	struct pw_mr_i *mr;
	struct pw_context *ctx;

	if (!ibmr)
		return -EINVAL;
	mr = to_mr(ibmr);
	ctx = ibmr->context;
	/* NOTIFY: the whole MR goes (peers' FAULT_INs for it then fail) */
	pw_notify_invalidated(mr, mr->start, mr->end);
	/* removes the key and waits for placements in progress to end */
	pw_keytable_remove(&ctx->keys, mr);
	if (mr->pt) {
		/* waits for a reclaim pass that may be evicting from it */
		pthread_mutex_lock(&ctx->obj_lock);
		pw_budget_del_mr_locked(ctx, mr);
		pthread_mutex_unlock(&ctx->obj_lock);
	}
	/* no event for it after this; queued ones are dropped, taken ones acked */
	pw_notifier_unwatch(mr);
	pw_async_forget_mr(ctx, mr);
	if (mr->pinned)
		unpin(ctx, mr);
	atomic_fetch_sub(&to_pd(ibmr->pd)->users, 1);
	/* no use is left: no lookup or fault can reach the table now */
	pw_pt_destroy(mr->pt);
	pw_mr_free_dead(mr);
	free(mr);
	return 0;
}
