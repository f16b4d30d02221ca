/* SPDX-License-Identifier: MIT */
/*
 * Device page table of an ODP MR: a sparse radix tree of page entries.
 *
 * Index i is a page number relative to the first page of the table (0 for
 * an implicit table). Leaves hold 512 entries; each directory level above
 * resolves 9 more bits of the index. The root is allocated at creation and
 * never changes; every other node is allocated by set_valid under the lock
 * and published with a release store, so a lock-free lookup that loads the
 * pointer with acquire sees the node fully zeroed. Nodes are only freed by
 * pw_pt_destroy(): freeing one earlier would need a grace period for the
 * lookups that may still be reading it, and the memory it would save is
 * small (see pw_pt_invalidate()).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "paging/pt.h"
#include "util/util.h"

#define LEAF_ENTRIES	(1u << PW_PT_LEAF_SHIFT)
#define LEAF_MASK	(LEAF_ENTRIES - 1)
#define DIR_ENTRIES	(1u << PW_PT_DIR_SHIFT)
#define DIR_MASK	(DIR_ENTRIES - 1)

struct pw_pt_leaf {
	_Atomic uint8_t ent[LEAF_ENTRIES];
	uint16_t nvalid;	/* VALID entries (pt->lock): lets scans skip */
};

struct pw_pt_dir {
	/* NULL or a node one level down; written under pt->lock, release */
	_Atomic(void *) slot[DIR_ENTRIES];
};

struct pw_pt {
	void *root;		/* a node of level @levels; immutable */
	unsigned int levels;	/* dir levels over the leaves (0: a leaf) */
	uint64_t first_pfn;	/* page number of index 0 */
	uint64_t npages;	/* indices [0, npages) exist */
	/*
	 * lock: serialises the writers (set_valid, invalidate, clock scan):
	 * it protects the tree's shape, the leaves' nvalid, the clock hand
	 * and every change of seq and the counters. It is what makes
	 * "read_retry false, then set_valid" atomic with respect to an
	 * invalidation. Lookups never take it.
	 */
	pthread_mutex_t lock;
	/*
	 * Nodes are carved from raw chunks (lock), never from malloc: the
	 * notifier's handler takes the lock, and a malloc under it could wait
	 * for an application thread whose munmap waits for the handler
	 * (util.h, "Raw memory"). Nodes live until the table is destroyed,
	 * so a bump pointer is all the allocator there is.
	 */
	struct pw_pt_chunk *chunks;
	unsigned char *bump;
	size_t bump_left;
	size_t next_chunk;	/* bytes of the next chunk (doubles to 1 MiB) */
	pthread_cond_t seq_even; /* seq became even again (with lock) */
	_Atomic uint64_t seq;	/* odd while an invalidation runs */
	uint64_t hand;		/* clock: next index to examine (lock) */
	/* written under lock (add_locked), read lock-free for stats */
	_Atomic uint64_t invalidations;
	_Atomic uint64_t valid_pages;
	_Atomic uint64_t mem_bytes;
};

/*
 * Add to a field only ever written under pt->lock: a load and a store,
 * not a locked read-modify-write, since no other writer can interleave.
 */
static inline void add_locked(_Atomic uint64_t *v, uint64_t delta,
			      memory_order mo)
{
	atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) +
			      delta, mo);
}

/* Bit position of a level-@lvl node's slot index within a page index. */
static inline unsigned int level_shift(unsigned int lvl)
{
	return PW_PT_LEAF_SHIFT + PW_PT_DIR_SHIFT * (lvl - 1);
}

static inline size_t node_bytes(unsigned int lvl)
{
	return lvl ? sizeof(struct pw_pt_dir) : sizeof(struct pw_pt_leaf);
}

struct pw_pt_chunk {
	struct pw_pt_chunk *next;
	size_t bytes;		/* as given to pw_raw_alloc */
};

#define NODE_ALIGN	64	/* a cache line: leaves are scanned hot */
#define CHUNK_HDR	((sizeof(struct pw_pt_chunk) + NODE_ALIGN - 1) & ~(size_t)(NODE_ALIGN - 1))
#define CHUNK_MIN	4096
#define CHUNK_MAX	(1u << 20)

static void *node_alloc_locked(struct pw_pt *pt, unsigned int lvl)
{
	size_t sz = (node_bytes(lvl) + NODE_ALIGN - 1) & ~(size_t)(NODE_ALIGN - 1);
	void *node;

	if (pt->bump_left < sz) {
		size_t bytes = PW_MAX(pt->next_chunk, CHUNK_HDR + sz);
		struct pw_pt_chunk *c = pw_raw_alloc(bytes);

		if (!c)
			return NULL;
		c->next = pt->chunks;
		c->bytes = bytes;
		pt->chunks = c;
		pt->bump = (unsigned char *)c + CHUNK_HDR;
		pt->bump_left = pw_raw_size(bytes) - CHUNK_HDR;
		pt->next_chunk = PW_MIN(pt->next_chunk * 2, (size_t)CHUNK_MAX);
	}
	node = pt->bump;		/* zeroed: fresh anonymous memory */
	pt->bump += sz;
	pt->bump_left -= sz;
	add_locked(&pt->mem_bytes, node_bytes(lvl), memory_order_relaxed);
	return node;
}

static void chunks_free(struct pw_pt *pt)
{
	struct pw_pt_chunk *c = pt->chunks;

	while (c) {
		struct pw_pt_chunk *next = c->next;

		pw_raw_free(c, c->bytes);
		c = next;
	}
	pt->chunks = NULL;
}

struct pw_pt *pw_pt_create(uint64_t start, uint64_t len, bool implicit)
{
	struct pw_pt *pt;
	uint64_t first, end, cover;
	unsigned int levels;

	/*
	 * Entries are per 4 KiB page and the geometry constants assume it;
	 * a table with bigger pages would need its own shift everywhere.
	 */
	if (sysconf(_SC_PAGESIZE) != (long)PW_PT_PAGE_SIZE) {
		errno = EINVAL;
		return NULL;
	}
	if (implicit) {
		first = 0;
		end = UINT64_C(1) << PW_PT_VA_BITS;
	} else {
		if (len == 0 || len > UINT64_MAX - start ||
		    start + len > UINT64_MAX - (PW_PT_PAGE_SIZE - 1)) {
			errno = EINVAL;
			return NULL;
		}
		first = start >> PW_PT_PAGE_SHIFT;
		end = (start + len + PW_PT_PAGE_SIZE - 1) >> PW_PT_PAGE_SHIFT;
		end <<= PW_PT_PAGE_SHIFT;
	}
	pt = calloc(1, sizeof(*pt));
	if (!pt)
		return NULL;
	pt->first_pfn = first;
	pt->npages = (end >> PW_PT_PAGE_SHIFT) - first;
	/* as few levels as the range needs: small MRs are a single leaf */
	levels = 0;
	for (cover = LEAF_ENTRIES; cover < pt->npages;
	     cover <<= PW_PT_DIR_SHIFT)
		levels++;
	pt->levels = levels;
	pt->next_chunk = CHUNK_MIN;
	pt->root = node_alloc_locked(pt, levels);
	if (!pt->root)
		goto err_pt;
	if (pthread_mutex_init(&pt->lock, NULL) != 0)
		goto err_root;
	if (pthread_cond_init(&pt->seq_even, NULL) != 0)
		goto err_lock;
	return pt;

err_lock:
	pthread_mutex_destroy(&pt->lock);
err_root:
	chunks_free(pt);
err_pt:
	free(pt);
	errno = ENOMEM;
	return NULL;
}

void pw_pt_destroy(struct pw_pt *pt)
{
	if (!pt)
		return;
	chunks_free(pt);
	pthread_cond_destroy(&pt->seq_even);
	pthread_mutex_destroy(&pt->lock);
	free(pt);
}

/* Lock-free descent: the leaf holding index @idx, or NULL if not there. */
static inline struct pw_pt_leaf *leaf_find(const struct pw_pt *pt,
					   uint64_t idx)
{
	void *node = pt->root;

	for (unsigned int lvl = pt->levels; lvl > 0; lvl--) {
		struct pw_pt_dir *d = node;

		/* pairs with the release store in leaf_get_locked() */
		node = atomic_load_explicit(
			&d->slot[(idx >> level_shift(lvl)) & DIR_MASK],
			memory_order_acquire);
		if (!node)
			return NULL;
	}
	return node;
}

/* The leaf holding @idx, allocating the missing nodes on the way down. */
static struct pw_pt_leaf *leaf_get_locked(struct pw_pt *pt, uint64_t idx)
{
	void *node = pt->root;

	for (unsigned int lvl = pt->levels; lvl > 0; lvl--) {
		struct pw_pt_dir *d = node;
		_Atomic(void *) *slot =
			&d->slot[(idx >> level_shift(lvl)) & DIR_MASK];

		/* we are the only writer: no ordering needed to read */
		node = atomic_load_explicit(slot, memory_order_relaxed);
		if (!node) {
			node = node_alloc_locked(pt, lvl - 1);
			if (!node)
				return NULL;
			/*
			 * Release: a lookup that finds the pointer must also
			 * find the node's zeroes, not whatever an earlier use
			 * of that memory left (there is none today: chunks
			 * are fresh mappings; the order costs nothing).
			 */
			atomic_store_explicit(slot, node, memory_order_release);
		}
	}
	return node;
}

/*
 * One page of a lookup: true if the entry has every bit of @need, setting
 * ACCESSED then. The CAS (not a fetch_or) keeps a racing invalidation's
 * clear intact: setting the bit on an entry that just became 0 would
 * leave a stale ACCESSED on an invalid page. A CAS that loses to any
 * change re-evaluates the new value, so the result is that of one instant.
 */
static inline bool entry_hit(_Atomic uint8_t *ent, uint8_t need)
{
	/* pairs with the release fetch_or in pw_pt_set_valid_locked() */
	uint8_t e = atomic_load_explicit(ent, memory_order_acquire);

	for (;;) {
		if ((e & need) != need)
			return false;
		if (e & PW_PT_ACCESSED)
			return true;
		if (atomic_compare_exchange_weak_explicit(ent, &e,
				(uint8_t)(e | PW_PT_ACCESSED),
				memory_order_acquire, memory_order_acquire))
			return true;
	}
}

bool pw_pt_lookup(struct pw_pt *pt, uint64_t addr, uint64_t len, bool write,
		  uint64_t *first_missing)
{
	uint8_t need = PW_PT_VALID | (write ? PW_PT_WRITABLE : 0);
	uint64_t pfn, idx, last;

	if (len == 0)
		return true;
	pfn = addr >> PW_PT_PAGE_SHIFT;
	if (unlikely(len > UINT64_MAX - addr || pfn < pt->first_pfn ||
		     pfn - pt->first_pfn >= pt->npages)) {
		if (first_missing)
			*first_missing = addr;
		return false;
	}
	idx = pfn - pt->first_pfn;
	last = ((addr + len - 1) >> PW_PT_PAGE_SHIFT) - pt->first_pfn;
	while (idx <= last) {
		struct pw_pt_leaf *leaf;
		uint64_t stop;

		if (idx >= pt->npages)
			goto miss;
		leaf = leaf_find(pt, idx);
		if (!leaf)
			goto miss;
		stop = PW_MIN(last, idx | LEAF_MASK);
		stop = PW_MIN(stop, pt->npages - 1);
		for (; idx <= stop; idx++)
			if (!entry_hit(&leaf->ent[idx & LEAF_MASK], need))
				goto miss;
	}
	return true;
miss:
	if (first_missing)
		*first_missing = (pt->first_pfn + idx) << PW_PT_PAGE_SHIFT;
	return false;
}

uint64_t pw_pt_read_begin(struct pw_pt *pt)
{
	uint64_t seq = atomic_load_explicit(&pt->seq, memory_order_acquire);

	if (likely(!(seq & 1)))
		return seq;
	/*
	 * Populating now would be wasted: the invalidation in progress makes
	 * read_retry fail anyway. Sleep until it ends.
	 */
	pthread_mutex_lock(&pt->lock);
	while ((seq = atomic_load_explicit(&pt->seq, memory_order_relaxed)) & 1)
		pthread_cond_wait(&pt->seq_even, &pt->lock);
	pthread_mutex_unlock(&pt->lock);
	return seq;
}

bool pw_pt_read_retry(struct pw_pt *pt, uint64_t seq)
{
	/* the lock orders this for callers that follow the contract */
	return atomic_load_explicit(&pt->seq, memory_order_acquire) != seq;
}

void pw_pt_lock(struct pw_pt *pt)
{
	pthread_mutex_lock(&pt->lock);
}

void pw_pt_unlock(struct pw_pt *pt)
{
	pthread_mutex_unlock(&pt->lock);
}

/*
 * [@addr, @addr + @len) as indices [*@lo, *@hi), clipped to the table;
 * *@clipped says whether part of the range lay outside (or wrapped).
 * Return: false if no page of the range is in the table (or @len is 0).
 */
static bool range_clip(const struct pw_pt *pt, uint64_t addr, uint64_t len,
		       uint64_t *lo, uint64_t *hi, bool *clipped)
{
	uint64_t end_pfn = pt->first_pfn + pt->npages;
	uint64_t last, plo, phi;

	if (len == 0)
		return false;
	*clipped = len - 1 > UINT64_MAX - addr;
	last = *clipped ? UINT64_MAX : addr + len - 1;
	plo = addr >> PW_PT_PAGE_SHIFT;
	phi = last >> PW_PT_PAGE_SHIFT;
	if (phi < pt->first_pfn || plo >= end_pfn)
		return false;
	if (plo < pt->first_pfn) {
		*clipped = true;
		plo = pt->first_pfn;
	}
	if (phi >= end_pfn) {
		*clipped = true;
		phi = end_pfn - 1;
	}
	*lo = plo - pt->first_pfn;
	*hi = phi - pt->first_pfn + 1;
	return true;
}

int pw_pt_set_valid_locked(struct pw_pt *pt, uint64_t addr, uint64_t len,
			   bool write)
{
	/*
	 * A fault is a use, as the kernel's young bit after a page fault:
	 * the CLOCK passes over the page once before taking it. Without
	 * this a page faulted in for a DROP retry, which comes back after a
	 * back-off of up to 100 ms, was the budget's first victim, and under
	 * load the retry could find it gone again and again until
	 * retry_cnt ran out (soak.short, once in CI).
	 */
	uint8_t bits = PW_PT_VALID | PW_PT_ACCESSED | (write ? PW_PT_WRITABLE : 0);
	uint64_t lo, hi, idx, added = 0;
	bool clipped;

	if (len == 0)
		return 0;
	if (!range_clip(pt, addr, len, &lo, &hi, &clipped) || clipped)
		return -EINVAL;
	/* all nodes first, so that -ENOMEM leaves no entry changed */
	for (idx = lo; idx < hi; idx = (idx | LEAF_MASK) + 1)
		if (!leaf_get_locked(pt, idx))
			return -ENOMEM;
	for (idx = lo; idx < hi;) {
		struct pw_pt_leaf *leaf = leaf_get_locked(pt, idx);
		uint64_t stop = PW_MIN(hi, (idx | LEAF_MASK) + 1);

		for (; idx < stop; idx++) {
			/*
			 * fetch_or, not a store: keeps an ACCESSED bit a
			 * lookup sets meanwhile. Release: whoever sees VALID
			 * also sees what the faulter did before.
			 */
			uint8_t old = atomic_fetch_or_explicit(
				&leaf->ent[idx & LEAF_MASK], bits,
				memory_order_release);

			if (!(old & PW_PT_VALID)) {
				leaf->nvalid++;
				added++;
			}
		}
	}
	add_locked(&pt->valid_pages, added, memory_order_relaxed);
	return 0;
}

/* Called for each existing leaf overlapping a walk; true stops the walk. */
typedef bool (*leaf_fn)(struct pw_pt *pt, struct pw_pt_leaf *leaf,
			uint64_t base, unsigned int from, unsigned int to,
			void *arg);

/*
 * Visit the existing leaves under @node (level @lvl, first index @base)
 * that overlap [@lo, @hi), in index order, skipping absent subtrees so
 * that a walk over a huge sparse range costs only what is allocated.
 * Return: true if @fn stopped the walk.
 */
static bool walk_locked(struct pw_pt *pt, void *node, unsigned int lvl,
			uint64_t base, uint64_t lo, uint64_t hi, leaf_fn fn,
			void *arg)
{
	struct pw_pt_dir *d = node;
	unsigned int shift, first, last;

	if (lvl == 0)
		return fn(pt, node, base, (unsigned int)(lo - base),
			  (unsigned int)(hi - base), arg);
	shift = level_shift(lvl);
	first = (unsigned int)((lo - base) >> shift);
	last = (unsigned int)((hi - 1 - base) >> shift);
	for (unsigned int i = first; i <= last; i++) {
		void *child = atomic_load_explicit(&d->slot[i],
						   memory_order_relaxed);
		uint64_t cbase = base + ((uint64_t)i << shift);
		uint64_t cend = cbase + (UINT64_C(1) << shift);

		if (!child)
			continue;
		if (walk_locked(pt, child, lvl - 1, cbase, PW_MAX(lo, cbase),
				PW_MIN(hi, cend), fn, arg))
			return true;
	}
	return false;
}

static bool invalidate_leaf_locked(struct pw_pt *pt, struct pw_pt_leaf *leaf,
				   uint64_t base, unsigned int from,
				   unsigned int to, void *arg)
{
	uint64_t *cleared = arg;

	/* only VALID entries are ever non-zero (see entry_hit()) */
	for (unsigned int i = from; i < to && leaf->nvalid; i++) {
		uint8_t old;

		if (!atomic_load_explicit(&leaf->ent[i], memory_order_relaxed))
			continue;
		/*
		 * An exchange, so that an ACCESSED bit being set right now
		 * is cleared too. Relaxed: a lookup that sees 0 misses and
		 * needs no data from us.
		 */
		old = atomic_exchange_explicit(&leaf->ent[i], 0,
					       memory_order_relaxed);
		if (old & PW_PT_VALID) {
			leaf->nvalid--;
			(*cleared)++;
		}
	}
	return false;
}

static void invalidate_begin_locked(struct pw_pt *pt)
{
	/* odd: read_begin sleeps, and every read_retry from now on fails */
	add_locked(&pt->seq, 1, memory_order_release);
	add_locked(&pt->invalidations, 1, memory_order_relaxed);
}

static void invalidate_end_locked(struct pw_pt *pt)
{
	add_locked(&pt->seq, 1, memory_order_release);
	pthread_cond_broadcast(&pt->seq_even);
}

void pw_pt_invalidate(struct pw_pt *pt, uint64_t addr, uint64_t len)
{
	uint64_t lo, hi, cleared = 0;
	bool clipped;

	pthread_mutex_lock(&pt->lock);
	invalidate_begin_locked(pt);
	if (range_clip(pt, addr, len, &lo, &hi, &clipped))
		walk_locked(pt, pt->root, pt->levels, 0, lo, hi,
			    invalidate_leaf_locked, &cleared);
	add_locked(&pt->valid_pages, -cleared, memory_order_relaxed);
	invalidate_end_locked(pt);
	pthread_mutex_unlock(&pt->lock);
}

void pw_pt_test_invalidate_begin(struct pw_pt *pt)
{
	pthread_mutex_lock(&pt->lock);
	invalidate_begin_locked(pt);
	pthread_mutex_unlock(&pt->lock);
}

void pw_pt_test_invalidate_end(struct pw_pt *pt)
{
	pthread_mutex_lock(&pt->lock);
	invalidate_end_locked(pt);
	pthread_mutex_unlock(&pt->lock);
}

uint64_t pw_pt_invalidations(const struct pw_pt *pt)
{
	return atomic_load_explicit(&pt->invalidations, memory_order_relaxed);
}

uint64_t pw_pt_valid_pages(const struct pw_pt *pt)
{
	return atomic_load_explicit(&pt->valid_pages, memory_order_relaxed);
}

size_t pw_pt_mem_bytes(const struct pw_pt *pt)
{
	return (size_t)atomic_load_explicit(&pt->mem_bytes,
					    memory_order_relaxed);
}

struct clock_scan {
	size_t max_pages, examined;
	uint64_t *victims;
	size_t max_victims, nvictims;
	uint64_t next;		/* index after the last one examined */
};

static bool scan_leaf_locked(struct pw_pt *pt, struct pw_pt_leaf *leaf,
			     uint64_t base, unsigned int from, unsigned int to,
			     void *arg)
{
	struct clock_scan *s = arg;

	for (unsigned int i = from; i < to && leaf->nvalid; i++) {
		uint8_t e = atomic_load_explicit(&leaf->ent[i],
						 memory_order_relaxed);

		if (!(e & PW_PT_VALID))
			continue;
		s->next = base + i + 1;
		/*
		 * A lookup may set ACCESSED right after we read it clear:
		 * the page is then a victim although just used. CLOCK is an
		 * approximation; the evictor's fault path copes with it.
		 */
		if (e & PW_PT_ACCESSED)
			atomic_fetch_and_explicit(&leaf->ent[i],
						  (uint8_t)~PW_PT_ACCESSED,
						  memory_order_relaxed);
		else
			s->victims[s->nvictims++] =
				(pt->first_pfn + base + i) << PW_PT_PAGE_SHIFT;
		if (++s->examined == s->max_pages ||
		    s->nvictims == s->max_victims)
			return true;
	}
	return false;
}

size_t pw_pt_clock_scan_locked(struct pw_pt *pt, size_t max_pages,
			       uint64_t *victims, size_t max_victims)
{
	struct clock_scan s = {
		.max_pages = max_pages,
		.victims = victims,
		.max_victims = max_victims,
	};
	uint64_t hand = pt->hand;
	bool stopped;

	if (max_pages == 0 || max_victims == 0)
		return 0;
	/* one revolution: [hand, end) then [0, hand) */
	stopped = walk_locked(pt, pt->root, pt->levels, 0, hand, pt->npages,
			      scan_leaf_locked, &s);
	if (!stopped && hand)
		stopped = walk_locked(pt, pt->root, pt->levels, 0, 0, hand,
				      scan_leaf_locked, &s);
	if (stopped)
		pt->hand = s.next == pt->npages ? 0 : s.next;
	return s.nvictims;
}
