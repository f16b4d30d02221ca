/* SPDX-License-Identifier: MIT */
/*
 * Memory regions and the key table.
 *
 * A key names an MR on the wire (the 2008 proposal's "region RRR"). Every
 * incoming op looks its key up here and holds a *use* of the MR only for
 * the duration of one placement step (one syscall); pw_dereg_mr() removes
 * the key and then waits for the uses in progress to drain, so nothing
 * lands after it returns.
 */
#ifndef PW_MR_MR_H
#define PW_MR_MR_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include <pagewire/pagewire.h>

struct pw_pt;

struct pw_dead_range {
	_Atomic uint64_t start, end;
};

struct pw_dead_set {
	atomic_uint n;			/* entries published */
	unsigned int cap;
	struct pw_dead_set *older;	/* replaced sets, freed with the MR */
	struct pw_dead_range r[];
};

/* The whole MR is dead (no memory was left to record a range). */
#define PW_DEAD_ALL	((struct pw_dead_set *)1)

struct pw_mr_i {
	struct pw_mr ibmr;
	uint64_t start;		/* first byte covered */
	uint64_t end;		/* one past the last byte (UINT64_MAX: implicit) */
	bool pinned;
	bool implicit;
	atomic_int uses;	/* placement steps in progress */
	/*
	 * ODP (explicit or implicit): the device page table (paging/pt.h);
	 * NULL for a pinned MR. fault_next/fault_ahead: where the last fault
	 * ended and how far it populated ahead (fault-around, fault.c).
	 */
	struct pw_pt *pt;
	_Atomic uint64_t fault_next;
	_Atomic uint64_t fault_ahead;
	/*
	 * Inline faults (fault.c): a private anonymous VMA inside the MR, as
	 * the fault worker last read it from /proc/self/maps. Under the page
	 * table's lock.
	 */
	uint64_t anon_start;
	uint64_t anon_end;
	struct pw_mr_i *pin_next; /* context's list of pinned MRs (ctx->mr_lock) */
	/*
	 * The notifier (paging/notifier.c, under its lock): @watched, the
	 * range is registered with the userfaultfd; @watch_next, its list;
	 * @follow_va, PW_ACCESS_ODP_FOLLOW_VA; @rewatch, part was unmapped
	 * and a fault there should register the new mapping again.
	 */
	bool watched;
	bool follow_va;
	atomic_bool rewatch;	/* read by the fault worker */
	struct pw_mr_i *watch_next;
	/*
	 * Dead ranges: unmapped or moved away under the MR (default
	 * semantics), never accessed again. Append-only: written by the
	 * notifier alone (its lock), read lock-free: a full set is replaced
	 * by a copy twice its size, published with release; old sets stay
	 * (chained) until the MR is freed, so a reader never sees one go.
	 */
	_Atomic(struct pw_dead_set *) dead;
	struct pw_mr_i *budget_next;	/* ODP MRs of the context (obj_lock) */
	/* NOTIFY generation: bumped by every invalidation (notify.c) */
	_Atomic uint64_t ngen;
	struct pw_dead_set *dead_retired; /* sets before PW_DEAD_ALL, to free */
	/* async events of this MR handed out and not yet acknowledged */
	atomic_int events_unacked;
};

static inline struct pw_mr_i *to_mr(struct pw_mr *mr)
{
	return (struct pw_mr_i *)mr;
}

/**
 * struct pw_keytable - rkey/lkey -> MR, open addressing
 * @lock: reader side is every incoming op's key lookup; writers are
 *        registration and deregistration. A rwlock keeps lookups from
 *        different QPs parallel.
 * @recent: ring of the last PW_KEY_QUARANTINE freed keys, never handed out
 *          again while in the ring (a stale rkey must not find a new MR).
 */
#define PW_KEY_QUARANTINE 4096
struct pw_keytable {
	pthread_rwlock_t lock;
	struct pw_mr_i **slots;
	uint32_t cap;		/* power of two */
	uint32_t used;		/* live entries */
	uint32_t tombs;		/* deleted markers */
	uint32_t recent[PW_KEY_QUARANTINE];
	uint32_t recent_pos;
};

int pw_keytable_init(struct pw_keytable *kt);
void pw_keytable_destroy(struct pw_keytable *kt);
/* Assign a fresh unpredictable key to @mr and insert it. Return 0 or -ENOMEM. */
int pw_keytable_insert(struct pw_keytable *kt, struct pw_mr_i *mr);
void pw_keytable_remove(struct pw_keytable *kt, struct pw_mr_i *mr);

/**
 * pw_mr_get() - look up @key and take a use of the MR
 *
 * Return: the MR with one use held (release with pw_mr_put()), or NULL if
 * no live MR has that key.
 */
struct pw_mr_i *pw_mr_get(struct pw_keytable *kt, uint32_t key);

static inline void pw_mr_put(struct pw_mr_i *mr)
{
	atomic_fetch_sub_explicit(&mr->uses, 1, memory_order_release);
}

/* Does [addr, addr+len) overlap a dead range of the MR (see above)? */
static inline bool pw_mr_dead(struct pw_mr_i *mr, uint64_t addr, uint64_t len)
{
	struct pw_dead_set *d = atomic_load_explicit(&mr->dead, memory_order_acquire);
	unsigned int n;

	if (!d)
		return false;
	if (d == PW_DEAD_ALL)
		return true;
	n = atomic_load_explicit(&d->n, memory_order_acquire);
	for (unsigned int i = 0; i < n; i++)
		if (addr < atomic_load_explicit(&d->r[i].end, memory_order_relaxed) &&
		    addr + len > atomic_load_explicit(&d->r[i].start, memory_order_relaxed))
			return true;
	return false;
}

/*
 * Does [addr, addr+len) lie inside the MR, and outside its dead ranges?
 * Overflow-safe.
 */
static inline bool pw_mr_covers(struct pw_mr_i *mr, uint64_t addr,
				uint64_t len)
{
	if (addr < mr->start)
		return false;
	if (mr->implicit)
		return len <= UINT64_MAX - addr;
	return len <= mr->end - addr && addr <= mr->end &&
	       !pw_mr_dead(mr, addr, len);
}

/*
 * The notifier's changes to an MR (paging/notifier.c, its lock held):
 * kill [a, b) for good (return false if it already was); drop [a, b)
 * from the page table, so the next access faults.
 */
bool pw_mr_kill_range(struct pw_mr_i *mr, uint64_t a, uint64_t b);
void pw_mr_free_dead(struct pw_mr_i *mr);
void pw_mr_forget_range(struct pw_mr_i *mr, uint64_t a, uint64_t b);

/*
 * A piece of memory the engine reads or writes, with the key of the MR it
 * lies in (0 for the engine's own memory, e.g. inline data). Every syscall
 * that touches the piece first takes a use of that MR (pw_kiov_get), so a
 * deregistration stops local placement at once, as it does remote.
 */
struct pw_kiov {
	void *base;
	size_t len;
	uint32_t key;
};

/**
 * pw_kiov_get() - iovecs for the next @max bytes of @k[@idx..] from @off
 * @out:   receives the iovecs
 * @uses:  receives the MR uses taken (release with pw_kiov_put())
 * @nuses: number of uses taken
 *
 * Return: the number of iovecs, or -1 (no use held) if a piece's MR is gone
 * or no longer covers it.
 */
int pw_kiov_get(struct pw_keytable *kt, const struct pw_kiov *k, int n, int idx,
		size_t off, uint64_t max, struct iovec *out,
		struct pw_mr_i **uses, int *nuses);
void pw_kiov_put(struct pw_mr_i **uses, int nuses);

#endif /* PW_MR_MR_H */
