/* SPDX-License-Identifier: MIT */
/*
 * Raw memory (util.h): zeroed blocks from a reservation of our own,
 * never from malloc.
 *
 * Why not malloc: an application thread may call munmap or madvise on
 * registered memory while it holds the C library's allocator lock
 * (glibc's heap trim does, several times under one arena lock), and the
 * kernel holds that thread until the notifier's handler reads the event.
 * A handler that called malloc on that arena, or waited for a lock whose
 * holder did, would never read it: libfabric #5554 deadlocked exactly so.
 *
 * Why not mmap(NULL) per block: the kernel places a new mapping in the
 * first gap that fits, and a gap inside an ODP MR's range (a hole at
 * registration, docs/semantics.md) would then hold our page-table nodes
 * where a peer's WRITE can reach them. So blocks are carved from one big
 * PROT_NONE reservation (1 GiB of address space, nothing committed), made
 * once; only a gap that large could take it. (The C library's own mmaps,
 * thread stacks among them, can land in such a gap too: that is the
 * documented price of registering a range with holes.) mprotect, the only call made
 * while blocks are carved, takes the mmap lock alone, which a thread
 * waiting for the handler has already dropped (the kernel's
 * userfaultfd_unmap_complete and userfaultfd_remove run after
 * mmap_write_unlock / mmap_read_unlock).
 *
 * Blocks are powers of two pages; freed blocks are kept on a free list per
 * size and reused (zeroed again), never returned: the reservation never
 * shrinks, so nothing else is ever mapped where a block was.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util/util.h"

#define RAW_PAGE	4096u
#define RAW_CLASSES	19			/* 4 KiB .. 1 GiB */
#define RAW_RESERVE	((size_t)1 << 30)
#define RAW_STEP	((size_t)2 << 20)	/* mprotect the frontier by this */

struct raw_free {
	struct raw_free *next;
};

/*
 * lock: protects everything in rm. Taken by the notifier's handler (it
 * allocates) and by application threads (they allocate and free); its
 * holders only call mmap/mprotect and memset, never malloc, and never wait
 * for anything else.
 */
static struct {
	pthread_mutex_t lock;
	char *bump, *rw_end, *end;	/* the current reservation */
	struct raw_free *free[RAW_CLASSES];
} rm = { .lock = PTHREAD_MUTEX_INITIALIZER };

static int size_class(size_t len)
{
	int c = 0;

	while (c < RAW_CLASSES && ((size_t)RAW_PAGE << c) < len)
		c++;
	return c < RAW_CLASSES ? c : -1;
}

size_t pw_raw_size(size_t len)
{
	int c = len ? size_class(len) : -1;

	return c < 0 ? 0 : (size_t)RAW_PAGE << c;
}

static void *carve_locked(size_t bytes)
{
	if ((size_t)(rm.end - rm.bump) < bytes) {
		/* a new reservation; what was left of the old one is dropped */
		void *r = mmap(NULL, RAW_RESERVE, PROT_NONE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (r == MAP_FAILED)
			return NULL;
		/*
		 * A flag of its own, so that the kernel never merges the
		 * reservation with an application mapping next to it (the
		 * application's munmap, mlock or smaps would see ours too).
		 * Not MAP_NORESERVE: only what is carved is committed, by
		 * mprotect, and PROT_NONE is not charged.
		 */
		if (madvise(r, RAW_RESERVE, MADV_NOHUGEPAGE))
			(void)madvise(r, RAW_RESERVE, MADV_DONTDUMP);
		rm.bump = rm.rw_end = r;
		rm.end = rm.bump + RAW_RESERVE;
	}
	if ((size_t)(rm.rw_end - rm.bump) < bytes) {
		size_t grow = PW_MAX(bytes - (size_t)(rm.rw_end - rm.bump), RAW_STEP);

		grow = PW_MIN(grow, (size_t)(rm.end - rm.rw_end));
		if (mprotect(rm.rw_end, grow, PROT_READ | PROT_WRITE))
			return NULL;
		rm.rw_end += grow;
	}
	rm.bump += bytes;
	return rm.bump - bytes;	/* fresh: zero */
}

void *pw_raw_alloc(size_t len)
{
	int c = len ? size_class(len) : -1;
	size_t bytes;
	void *p;

	if (c < 0) {
		errno = len ? ENOMEM : EINVAL;
		return NULL;
	}
	bytes = (size_t)RAW_PAGE << c;
	pthread_mutex_lock(&rm.lock);
	p = rm.free[c];
	if (p) {
		rm.free[c] = rm.free[c]->next;
		memset(p, 0, bytes);
	} else {
		p = carve_locked(bytes);
	}
	pthread_mutex_unlock(&rm.lock);
	if (!p)
		errno = ENOMEM;
	return p;
}

void pw_raw_free(void *p, size_t len)
{
	int c = len ? size_class(len) : -1;
	struct raw_free *f = p;

	if (!p || c < 0)
		return;
	pthread_mutex_lock(&rm.lock);
	f->next = rm.free[c];
	rm.free[c] = f;
	pthread_mutex_unlock(&rm.lock);
}
