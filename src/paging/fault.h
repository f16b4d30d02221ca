/* SPDX-License-Identifier: MIT */
/*
 * The fault engine: resolves responder and local page faults of
 * on-demand-paging MRs off the progress thread.
 *
 * The progress thread never waits for a page (the objection in the 2008
 * linux-kernel thread, docs/design.md: "the target must either stall or
 * drop"). When an op needs pages that the MR's device
 * page table does not hold, the QP hands a struct pw_fault to this engine
 * and, under STALL, stops reading its socket: TCP backpressure holds the
 * sender, every other QP keeps running. A worker thread populates the
 * range with MADV_POPULATE_WRITE / MADV_POPULATE_READ (plus fault-around
 * for sequential streams), marks the pages valid under the page table's
 * read_begin / read_retry discipline, and hands the fault back to the
 * progress engine, whose token holder runs the QP's done callback.
 */
#ifndef PW_PAGING_FAULT_H
#define PW_PAGING_FAULT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct pw_engine;
struct pw_keytable;

enum pw_fault_state {
	PW_FAULT_IDLE,		/* not submitted, or finished and reaped */
	PW_FAULT_QUEUED,
	PW_FAULT_RUNNING,	/* the worker populates it */
	PW_FAULT_DONE,		/* waiting for the engine to reap it */
	PW_FAULT_REAPING,	/* its done callback runs */
};

/**
 * struct pw_fault - one fault request, embedded in its owner (a QP)
 * @key:   the MR's key; the worker looks it up again (the MR may be gone)
 * @addr/@len: the bytes the op needs
 * @write: populate for write
 * @done:  run by the progress engine's token holder once the fault is
 *         resolved (@err 0) or failed (@err -EFAULT: no mapping there, or
 *         the MR is gone)
 */
struct pw_fault {
	uint32_t key;
	bool write;
	uint64_t addr;
	uint64_t len;
	void (*done)(struct pw_fault *f);
	int err;
	uint64_t t_submit_ns;
	bool owned;	/* heap-allocated, freed by @done or at stop (advice) */
	/* private to fault.c, under the engine's lock */
	enum pw_fault_state state;
	bool cancelled;
	struct pw_fault *next;
};

/* fault latency histogram: bucket i counts faults of < 2^i us (last: more) */
#define PW_FAULT_HIST	16

/**
 * struct pw_fault_stats - counters, read without a lock (relaxed atomics)
 */
struct pw_fault_stats {
	atomic_uint_fast64_t faults;	/* requests resolved or failed */
	atomic_uint_fast64_t failed;	/* of those, no mapping / MR gone */
	atomic_uint_fast64_t pages;	/* pages populated for the ops */
	atomic_uint_fast64_t around_pages; /* pages populated ahead */
	atomic_uint_fast64_t major;	/* faults that had to read pages in */
	atomic_uint_fast64_t inline_faults; /* resolved on the spot (no I/O possible) */
	atomic_uint_fast64_t fault_ns;	/* submit to done, summed */
	atomic_uint_fast64_t stall_ns;	/* QPs stalled (STALL), summed */
	/* DROP policy */
	atomic_uint_fast64_t naks_sent;	/* PAGE_FAULT NAKs of our responders */
	atomic_uint_fast64_t naks_received; /* ... that our requesters got */
	atomic_uint_fast64_t retransmitted_bytes; /* payload our requesters resent */
	atomic_uint_fast64_t dropped_bytes; /* payload our responders discarded */
	atomic_uint_fast64_t lat_hist[PW_FAULT_HIST];
};

struct pw_fault_engine {
	pthread_t thread;
	bool started;
	/*
	 * lock: protects the request queue, the done list, every request's
	 * state and the stop flag. cond: wakes the worker (new work, stop)
	 * and cancellers (a request changed state).
	 */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct pw_fault *head, *tail;
	struct pw_fault *done_head, *done_tail;
	atomic_bool done_pending;	/* done_head non-empty, read lock-free */
	atomic_bool queued;	/* an op's fault is queued (prefetches yield) */
	bool stop;
	struct pw_keytable *keys;
	struct pw_engine *eng;
	int pagemap_fd;		/* /proc/self/pagemap, or -1: no inline faults */
	uint32_t delay_ms;	/* PW_FAULT_DELAY_MS: each worker fault waits first */
	/* pages were added to a table (the memory budget's wakeup), or NULL */
	void (*added)(struct pw_fault_engine *fe);
	struct pw_fault_stats stats;
};

/**
 * pw_fault_start() - start the worker thread
 * @fe:   the engine (zeroed by the caller's context allocation)
 * @keys: the context's key table (MRs are looked up by key)
 * @eng:  the progress engine to kick when a fault completes
 *
 * Return: 0 or -errno.
 */
int pw_fault_start(struct pw_fault_engine *fe, struct pw_keytable *keys,
		   struct pw_engine *eng);

/*
 * Stop and join the worker; then, once the progress engine has stopped
 * too (no reaper, no kick target), pw_fault_fini() frees what is left
 * (asynchronous advice) and the lock. QPs must have cancelled theirs.
 */
void pw_fault_stop(struct pw_fault_engine *fe);
void pw_fault_fini(struct pw_fault_engine *fe);

/* Queue @f (state IDLE). Its done callback runs later on the token holder. */
void pw_fault_submit(struct pw_fault_engine *fe, struct pw_fault *f);

/*
 * Token holder: run the done callbacks of finished requests. Cheap when
 * there are none (one atomic load).
 */
void pw_fault_reap(struct pw_fault_engine *fe);

/*
 * Take @f back, whatever its state: dequeue it, or wait for the worker
 * or a running callback to finish with it. After this returns the owner
 * may free @f; its callback will not run (again). Must not be called by
 * the token holder from a done callback, nor with locks the callback
 * takes held.
 */
void pw_fault_cancel(struct pw_fault_engine *fe, struct pw_fault *f);

/*
 * The fast path of a small fault, on the calling (progress) thread: if
 * the range lies in a private anonymous mapping of the MR (as the worker
 * last saw it) and /proc/self/pagemap shows no page of it swapped out,
 * nothing can need I/O: a missing page is a zero-fill minor fault that
 * the kernel takes during the data copy itself. The pages are marked
 * valid at once and true is returned; otherwise false (use the worker).
 */
bool pw_fault_try_inline(struct pw_fault_engine *fe, const struct pw_fault *f);

/*
 * A VALID page-table entry says a page was populated, not that it still
 * is: the kernel may have swapped it out since (we do not pin). Placing
 * data there would make the progress thread wait for the swap-in. So the
 * ranges of ops of at least PW_RESIDENCY_MIN bytes are checked with
 * mincore() (1.2-1.5 us per call here, on each side; measured against
 * pinned MRs in the same run, --vs-pinned: 0.89x at 64 KiB, 0.95x at
 * 256 KiB, 0.99x at 1 MiB, so the check starts at 1 MiB); on a
 * non-resident page the op faults through the worker, which brings it
 * back in. Smaller ops into a swapped-out page take the major fault in
 * the copy. Return true with *first = the first non-resident page's
 * address.
 */
#define PW_RESIDENCY_MIN	(1024 * 1024)
bool pw_fault_nonresident(uint64_t addr, uint64_t len, uint64_t *first);

/* Inline attempts are for faults of at most this many bytes. */
#define PW_FAULT_INLINE_MAX	(64 * 1024)
/*
 * A STALL fault of data placed as it arrives covers at most this much:
 * the QP places each step while the worker populates the next.
 */
#define PW_FAULT_STEP		(4 * 1024 * 1024)

/*
 * Populate [addr, addr + len) of the MR with key @key for @write and mark
 * it valid in the MR's page table. Synchronous; used by the worker and by
 * pw_advise_mr(). With @ahead, *ahead gets how many bytes after the range
 * a sequential stream should have populated next (fault-around; 0 when
 * the fault is not sequential). Return 0, -EFAULT (no mapping, or the MR
 * is gone) or -ENOMEM.
 */
int pw_fault_populate(struct pw_fault_engine *fe, uint32_t key, uint64_t addr,
		      uint64_t len, bool write, uint64_t *ahead);

#endif /* PW_PAGING_FAULT_H */
