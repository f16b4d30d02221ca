/* SPDX-License-Identifier: MIT */
/*
 * The fault engine (see fault.h). One worker thread: MADV_POPULATE_* over
 * a whole range is already one system call per fault, and a second worker
 * measured no better on 2 cores (first-touch 1 MiB WRITEs, paired runs:
 * 0.29-0.35x of resident against 0.22-0.39x with one; the two populate
 * the same stream in lockstep).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "engine/engine.h"
#include "mr/mr.h"
#include "paging/fault.h"
#include "paging/notifier.h"
#include "paging/pt.h"
#include "util/util.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ	22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE	23
#endif

/*
 * Fault-around: a fault that starts where the previous one of the MR
 * ended is a sequential stream, and the worker populates ahead of it,
 * doubling from PW_FAULT_AROUND_MIN up to PW_FAULT_AROUND_MAX (mlx5's
 * ODP prefetch bound is 4 MiB), so the next ops find their pages valid.
 */
#define PW_FAULT_AROUND_MIN	(64 * 1024)
#define PW_FAULT_AROUND_MAX	(4 * 1024 * 1024)
#define PW_FAULT_AROUND_CHUNK	(256 * 1024)	/* between checks for op faults */

/* MADV_POPULATE_* works here (Linux >= 5.14); probed by pw_fault_start(). */
static bool pw_populate_supported = true;

static uint64_t page_down(uint64_t a)
{
	return a & ~(PW_PT_PAGE_SIZE - 1);
}

static uint64_t page_up(uint64_t a)
{
	return a > UINT64_MAX - (PW_PT_PAGE_SIZE - 1) ? page_down(a) :
	       page_down(a + PW_PT_PAGE_SIZE - 1);
}

static uint64_t majflt(void)
{
	struct rusage ru;

	return getrusage(RUSAGE_THREAD, &ru) == 0 ? (uint64_t)ru.ru_majflt : 0;
}

/*
 * Populate one page-aligned range and publish it in @pt, never over an
 * invalidation that raced with the population (mmu_interval_notifier's
 * read_begin / read_retry discipline).
 */
static int populate_range(struct pw_mr_i *mr, uint64_t a, uint64_t len,
			  bool write)
{
	struct pw_pt *pt = mr->pt;

	for (;;) {
		uint64_t seq = pw_pt_read_begin(pt);
		int ret;

		if (pw_populate_supported &&
		    madvise((void *)(uintptr_t)a, len,
			    write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ)) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			/*
			 * ENOMEM: no mapping; EFAULT: SIGBUS/SIGSEGV
			 * territory; EINVAL: a protection that refuses the
			 * access (read-only for write, PROT_NONE) or a mapping
			 * madvise cannot populate: all "no mapping there".
			 */
			return -EFAULT;
		}
		/*
		 * A kernel older than 5.14 (probed at start) cannot populate:
		 * mark the pages valid anyway, placement faults in place as
		 * before this engine, and EFAULT still ends the op.
		 */
		pw_pt_lock(pt);
		if (pw_pt_read_retry(pt, seq)) {
			pw_pt_unlock(pt);
			continue;
		}
		/* unmapped under the MR (notifier): whatever is there now is not ours */
		if (pw_mr_dead(mr, a, len)) {
			pw_pt_unlock(pt);
			return -EFAULT;
		}
		ret = pw_pt_set_valid_locked(pt, a, len, write);
		pw_pt_unlock(pt);
		return ret == -EINVAL ? -EFAULT : ret;
	}
}

static void learn_vma(struct pw_mr_i *mr, uint64_t addr);

int pw_fault_populate(struct pw_fault_engine *fe, uint32_t key, uint64_t addr,
		      uint64_t len, bool write, uint64_t *ahead)
{
	struct pw_mr_i *mr = pw_mr_get(fe->keys, key);
	uint64_t a, end, next, grow = 0;
	int ret;

	if (ahead)
		*ahead = 0;
	if (!mr)
		return -EFAULT;
	if (!mr->pt || !len || !pw_mr_covers(mr, addr, len)) {
		/* pinned: nothing to fault; outside the MR: no access */
		ret = mr->pt && len ? -EFAULT : 0;
		pw_mr_put(mr);
		return ret;
	}
	a = page_down(addr);
	end = page_up(addr + len);
	if (end <= a) {
		/* the last page of the address space: nothing there to map */
		pw_mr_put(mr);
		return -EFAULT;
	}
	ret = populate_range(mr, a, end - a, write);
	if (ret == 0 && atomic_load_explicit(&mr->rewatch, memory_order_relaxed))
		pw_notifier_rewatch(mr, a, end);	/* FOLLOW_VA: a new mapping */
	if (ret == 0) {
		/*
		 * Fault-around: a fault starting where the MR's last one
		 * ended is a sequential stream. The range after it is
		 * populated too, but only once the op is resumed (the worker
		 * does it after reporting this fault), so that it overlaps
		 * with the op's data instead of delaying it.
		 */
		next = atomic_exchange_explicit(&mr->fault_next, end,
						memory_order_relaxed);
		grow = atomic_load_explicit(&mr->fault_ahead,
					    memory_order_relaxed);
		/*
		 * Sequential: it starts where the last one ended, or inside
		 * the window populated ahead of it (the stream caught up
		 * with a prefetch still under way: its first pages are
		 * valid, so the op's fault starts further on).
		 */
		if (ahead && a >= next && a - next <= grow) {
			uint64_t mr_end = mr->implicit ? page_down(UINT64_MAX) :
					  page_down(mr->end);

			/* at least two more ops of this size, doubling */
			grow = PW_MAX(PW_MAX(grow * 2, 2 * (end - a)),
				      (uint64_t)PW_FAULT_AROUND_MIN);
			grow = PW_MIN(grow, (uint64_t)PW_FAULT_AROUND_MAX);
			atomic_store_explicit(&mr->fault_ahead, grow,
					      memory_order_relaxed);
			*ahead = end < mr_end ? PW_MIN(grow, mr_end - end) : 0;
		} else if (ahead) {
			atomic_store_explicit(&mr->fault_ahead, 0,
					      memory_order_relaxed);
		}
		if (fe->pagemap_fd >= 0)
			learn_vma(mr, addr);
	}
	pw_mr_put(mr);
	return ret;
}

/*
 * The fault-around part of a sequential fault, after the fault itself was
 * reported, in chunks: pages already valid are skipped, and a fault that
 * an op is waiting for (queued meanwhile) goes first: the rest of the
 * prefetch is dropped, the next sequential fault asks again. A hole there
 * is nobody's error. Return the pages populated.
 */
static uint64_t populate_ahead(struct pw_fault_engine *fe, uint32_t key,
			       uint64_t a, uint64_t len, bool write)
{
	struct pw_mr_i *mr = pw_mr_get(fe->keys, key);
	uint64_t n = 0, end = a + len;

	if (!mr)
		return 0;
	if (!mr->pt || !pw_mr_covers(mr, a, len))
		goto out;
	while (a < end &&
	       !atomic_load_explicit(&fe->queued, memory_order_acquire)) {
		uint64_t c = PW_MIN(end - a, (uint64_t)PW_FAULT_AROUND_CHUNK), miss;

		/*
		 * Valid entries over swapped-out pages too (the residency
		 * check sends ops there to the worker one at a time): the
		 * stream's swap-in then overlaps its placement.
		 */
		if (!pw_pt_lookup(mr->pt, a, c, write, &miss) ||
		    pw_fault_nonresident(a, c, &miss)) {
			uint64_t m = PW_MAX(miss, a);

			if (populate_range(mr, m, a + c - m, write))
				break;
			/* FOLLOW_VA: as pw_fault_populate, a new mapping is watched anew */
			if (atomic_load_explicit(&mr->rewatch, memory_order_relaxed))
				pw_notifier_rewatch(mr, m, a + c);
			n += (a + c - m) / PW_PT_PAGE_SIZE;
		}
		a += c;
	}
out:
	pw_mr_put(mr);
	return n;
}


/*
 * Remember the private anonymous, writable mapping around @addr, clipped
 * to the MR, for pw_fault_try_inline(). Read from /proc/self/maps, on the
 * worker only (tens of us: never on the progress thread), and only when
 * @addr is outside what the MR already remembers. A mapping that changes
 * later is forgotten by invalidations (the notifier, notifier.h); until then
 * the cost of a stale entry is a fault taken in the data copy.
 */
static void learn_vma(struct pw_mr_i *mr, uint64_t addr)
{
	uint64_t lo = 0, hi = 0, s, e, inode;
	char line[512], perms[8], path[256];
	FILE *f;

	pw_pt_lock(mr->pt);
	s = mr->anon_start;
	e = mr->anon_end;
	pw_pt_unlock(mr->pt);
	if (addr >= s && addr < e)
		return;
	f = fopen("/proc/self/maps", "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		int n;

		path[0] = 0;
		n = sscanf(line, "%" SCNx64 "-%" SCNx64 " %7s %*s %*s %" SCNu64 " %255s",
			   &s, &e, perms, &inode, path);
		if (n < 4 || addr < s || addr >= e)
			continue;
		/* private, writable, no file, not a kernel special mapping */
		if (perms[1] == 'w' && perms[3] == 'p' && inode == 0 &&
		    (!path[0] || !strcmp(path, "[heap]") || !strcmp(path, "[stack]") ||
		     !strncmp(path, "[anon:", 6))) {	/* PR_SET_VMA_ANON_NAME */
			lo = s;
			hi = e;
		}
		break;
	}
	fclose(f);
	if (hi) {
		if (!mr->implicit) {
			lo = PW_MAX(lo, page_down(mr->start));
			hi = PW_MIN(hi, page_up(mr->end));
		}
		pw_pt_lock(mr->pt);
		mr->anon_start = lo;
		mr->anon_end = hi;
		pw_pt_unlock(mr->pt);
	}
}

bool pw_fault_nonresident(uint64_t addr, uint64_t len, uint64_t *first)
{
	uint64_t a = page_down(addr), end = page_up(addr + len);
	unsigned char vec[256];

	while (a < end) {
		uint64_t n = PW_MIN((end - a) / PW_PT_PAGE_SIZE, (uint64_t)sizeof(vec));

		/* ENOMEM (a hole): placement reports it; not a residency issue */
		if (mincore((void *)(uintptr_t)a, n * PW_PT_PAGE_SIZE, vec))
			return false;
		for (uint64_t i = 0; i < n; i++)
			if (!(vec[i] & 1)) {
				*first = a + i * PW_PT_PAGE_SIZE;
				return true;
			}
		a += n * PW_PT_PAGE_SIZE;
	}
	return false;
}

bool pw_fault_try_inline(struct pw_fault_engine *fe, const struct pw_fault *f)
{
	uint64_t a = page_down(f->addr), end = page_up(f->addr + f->len);
	uint64_t ent[PW_FAULT_INLINE_MAX / PW_PT_PAGE_SIZE + 1];
	size_t n = (size_t)((end - a) / PW_PT_PAGE_SIZE);
	struct pw_mr_i *mr;
	bool ok = false;

	if (fe->pagemap_fd < 0 || !f->len || f->len > PW_FAULT_INLINE_MAX ||
	    n > sizeof(ent) / sizeof(ent[0]))
		return false;
	mr = pw_mr_get(fe->keys, f->key);
	if (!mr)
		return false;
	/* FOLLOW_VA after an unmap: the worker watches the new mapping anew */
	if (!mr->pt || atomic_load_explicit(&mr->rewatch, memory_order_relaxed))
		goto out;
	pw_pt_lock(mr->pt);
	if (a >= mr->anon_start && end <= mr->anon_end &&
	    pread(fe->pagemap_fd, ent, n * sizeof(ent[0]),
		  (off_t)(a / PW_PT_PAGE_SIZE * sizeof(ent[0]))) ==
	    (ssize_t)(n * sizeof(ent[0]))) {
		ok = true;
		/* bit 62: swapped out: bringing it back may need I/O */
		for (size_t i = 0; i < n && ok; i++)
			ok = !(ent[i] & (UINT64_C(1) << 62));
		if (ok && pw_mr_dead(mr, a, end - a))
			ok = false;	/* the worker reports it */
		if (ok)
			ok = pw_pt_set_valid_locked(mr->pt, a, end - a, f->write) == 0;
	}
	pw_pt_unlock(mr->pt);
	if (ok) {
		atomic_fetch_add_explicit(&fe->stats.inline_faults, 1,
					  memory_order_relaxed);
		atomic_fetch_add_explicit(&fe->stats.faults, 1,
					  memory_order_relaxed);
		atomic_fetch_add_explicit(&fe->stats.pages, n,
					  memory_order_relaxed);
		atomic_fetch_add_explicit(&fe->stats.lat_hist[0], 1,
					  memory_order_relaxed);
		if (fe->added)
			fe->added(fe);
	}
out:
	pw_mr_put(mr);
	return ok;
}

static void account(struct pw_fault_engine *fe, const struct pw_fault *f,
		    bool major)
{
	struct pw_fault_stats *s = &fe->stats;
	uint64_t ns = pw_now_ns() - f->t_submit_ns, us = ns / 1000;
	unsigned int b = 0;

	while (b + 1 < PW_FAULT_HIST && us >= (1ull << b))
		b++;
	atomic_fetch_add_explicit(&s->faults, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->fault_ns, ns, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->lat_hist[b], 1, memory_order_relaxed);
	if (f->err) {
		atomic_fetch_add_explicit(&s->failed, 1, memory_order_relaxed);
		return;
	}
	atomic_fetch_add_explicit(&s->pages,
				  (page_up(f->addr + f->len) - page_down(f->addr)) /
				  PW_PT_PAGE_SIZE, memory_order_relaxed);
	if (major)
		atomic_fetch_add_explicit(&s->major, 1, memory_order_relaxed);
}

static void *worker_main(void *arg)
{
	struct pw_fault_engine *fe = arg;

	pthread_mutex_lock(&fe->lock);
	for (;;) {
		struct pw_fault *f;
		uint64_t ahead, maj, a_addr;
		uint32_t a_key;
		bool a_write;

		while (!fe->head && !fe->stop)
			pthread_cond_wait(&fe->cond, &fe->lock);
		if (fe->stop)
			break;
		f = fe->head;
		fe->head = f->next;
		if (!fe->head) {
			fe->tail = NULL;
			atomic_store_explicit(&fe->queued, false, memory_order_relaxed);
		}
		f->state = PW_FAULT_RUNNING;
		pthread_mutex_unlock(&fe->lock);

		/* diagnostics: a fault as slow as a disk read (PW_FAULT_DELAY_MS) */
		if (fe->delay_ms) {
			struct timespec d = { .tv_sec = fe->delay_ms / 1000,
					      .tv_nsec = (long)(fe->delay_ms % 1000) * 1000000L };

			while (nanosleep(&d, &d) != 0 && errno == EINTR)
				;
		}
		maj = majflt();
		f->err = pw_fault_populate(fe, f->key, f->addr, f->len, f->write,
					   &ahead);
		account(fe, f, majflt() > maj);
		if (fe->added && !f->err)
			fe->added(fe);
		/* @f is the owner's once reported: keep what fault-around needs */
		a_key = f->key;
		a_write = f->write;
		a_addr = page_up(f->addr + f->len);

		pthread_mutex_lock(&fe->lock);
		if (f->cancelled) {
			f->state = PW_FAULT_IDLE;
			pthread_cond_broadcast(&fe->cond);
			continue;
		}
		f->state = PW_FAULT_DONE;
		f->next = NULL;
		if (fe->done_tail)
			fe->done_tail->next = f;
		else
			fe->done_head = f;
		fe->done_tail = f;
		atomic_store_explicit(&fe->done_pending, true, memory_order_release);
		pthread_mutex_unlock(&fe->lock);
		pw_engine_kick(fe->eng);
		if (ahead) {
			atomic_fetch_add_explicit(&fe->stats.around_pages,
						  populate_ahead(fe, a_key, a_addr,
								 ahead, a_write),
						  memory_order_relaxed);
			if (fe->added)
				fe->added(fe);
		}
		pthread_mutex_lock(&fe->lock);
	}
	pthread_mutex_unlock(&fe->lock);
	return NULL;
}

int pw_fault_start(struct pw_fault_engine *fe, struct pw_keytable *keys,
		   struct pw_engine *eng)
{
	int ret;

	fe->keys = keys;
	fe->eng = eng;
	{
		void *probe = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (probe != MAP_FAILED) {
			pw_populate_supported =
				madvise(probe, 4096, MADV_POPULATE_READ) == 0 ||
				errno != EINVAL;
			munmap(probe, 4096);
		}
	}
	/* present/swapped bits are readable without privilege (PFNs are not) */
	/* a delayed fault stands for one that reads a disk: never inline */
	if (getenv("PW_FAULT_DELAY_MS"))
		fe->delay_ms = (uint32_t)strtoul(getenv("PW_FAULT_DELAY_MS"), NULL, 10);
	fe->pagemap_fd = fe->delay_ms || (getenv("PW_FAULT_INLINE") &&
					  !strcmp(getenv("PW_FAULT_INLINE"), "off")) ?
			 -1 : open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	pthread_mutex_init(&fe->lock, NULL);
	pthread_cond_init(&fe->cond, NULL);
	ret = -pthread_create(&fe->thread, NULL, worker_main, fe);
	if (ret) {
		if (fe->pagemap_fd >= 0)
			close(fe->pagemap_fd);
		pthread_cond_destroy(&fe->cond);
		pthread_mutex_destroy(&fe->lock);
		return ret;
	}
	fe->started = true;
	return 0;
}

static void free_owned(struct pw_fault **head)
{
	while (*head) {
		struct pw_fault *f = *head;

		*head = f->next;
		if (f->owned)
			free(f);
	}
}

void pw_fault_stop(struct pw_fault_engine *fe)
{
	if (!fe->started)
		return;
	pthread_mutex_lock(&fe->lock);
	fe->stop = true;
	pthread_cond_broadcast(&fe->cond);
	pthread_mutex_unlock(&fe->lock);
	pthread_join(fe->thread, NULL);
}

void pw_fault_fini(struct pw_fault_engine *fe)
{
	if (!fe->started)
		return;
	/*
	 * QPs cancelled theirs before; what is left is asynchronous advice
	 * nobody waits for (pw_advise_mr()), owned by us. The engine has
	 * stopped, so no reaper walks the done list any more.
	 */
	free_owned(&fe->head);
	free_owned(&fe->done_head);
	fe->tail = fe->done_tail = NULL;
	if (fe->pagemap_fd >= 0)
		close(fe->pagemap_fd);
	fe->pagemap_fd = -1;
	pthread_cond_destroy(&fe->cond);
	pthread_mutex_destroy(&fe->lock);
	fe->started = false;
}

void pw_fault_submit(struct pw_fault_engine *fe, struct pw_fault *f)
{
	pthread_mutex_lock(&fe->lock);
	f->t_submit_ns = pw_now_ns();
	f->err = 0;
	f->next = NULL;
	f->cancelled = false;
	f->state = PW_FAULT_QUEUED;
	if (fe->tail)
		fe->tail->next = f;
	else
		fe->head = f;
	fe->tail = f;
	/* an op waits for it: a prefetch in progress yields (populate_ahead) */
	if (!f->owned)
		atomic_store_explicit(&fe->queued, true, memory_order_release);
	pthread_cond_broadcast(&fe->cond);
	pthread_mutex_unlock(&fe->lock);
}

void pw_fault_reap(struct pw_fault_engine *fe)
{
	if (!atomic_load_explicit(&fe->done_pending, memory_order_acquire))
		return;
	pthread_mutex_lock(&fe->lock);
	while (fe->done_head) {
		struct pw_fault *f = fe->done_head;

		fe->done_head = f->next;
		if (!fe->done_head)
			fe->done_tail = NULL;
		bool owned = f->owned;

		f->state = PW_FAULT_REAPING;
		pthread_mutex_unlock(&fe->lock);
		f->done(f);	/* an owned fault is freed here: no canceller */
		pthread_mutex_lock(&fe->lock);
		/* unless the callback submitted it again (the op's next range) */
		if (!owned && f->state == PW_FAULT_REAPING) {
			f->state = PW_FAULT_IDLE;
			pthread_cond_broadcast(&fe->cond);
		}
	}
	atomic_store_explicit(&fe->done_pending, false, memory_order_relaxed);
	pthread_mutex_unlock(&fe->lock);
}

/* Unlink @f from the singly linked list *head / *tail, if it is there. */
static bool unlink_fault(struct pw_fault **head, struct pw_fault **tail,
			 struct pw_fault *f)
{
	struct pw_fault *prev = NULL;

	for (struct pw_fault *p = *head; p; prev = p, p = p->next) {
		if (p != f)
			continue;
		if (prev)
			prev->next = p->next;
		else
			*head = p->next;
		if (*tail == p)
			*tail = prev;
		return true;
	}
	return false;
}

void pw_fault_cancel(struct pw_fault_engine *fe, struct pw_fault *f)
{
	if (!fe->started)
		return;
	pthread_mutex_lock(&fe->lock);
	for (;;) {
		if (f->state == PW_FAULT_QUEUED) {
			unlink_fault(&fe->head, &fe->tail, f);
			if (!fe->head)
				atomic_store_explicit(&fe->queued, false,
						      memory_order_relaxed);
			f->state = PW_FAULT_IDLE;
		} else if (f->state == PW_FAULT_DONE) {
			unlink_fault(&fe->done_head, &fe->done_tail, f);
			f->state = PW_FAULT_IDLE;
		} else if (f->state == PW_FAULT_RUNNING) {
			f->cancelled = true;
		}
		if (f->state == PW_FAULT_IDLE)
			break;
		pthread_cond_wait(&fe->cond, &fe->lock);
	}
	pthread_mutex_unlock(&fe->lock);
}
