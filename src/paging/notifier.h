/* SPDX-License-Identifier: MIT */
/*
 * The notifier: the kernel's VM changes to registered memory, through
 * userfaultfd's non-cooperative events (the 2008 proposal: "If the driver
 * tracks the mappings using the notifier then the VM can make sure that
 * the right things happen"). User space has no mmu notifier; a
 * userfaultfd that has the registered ranges registered in write-protect
 * mode (and never write-protects a page, so no fault is ever delivered to
 * it) receives UNMAP (munmap, and mmap/mremap over the range), REMOVE
 * (madvise DONTNEED/REMOVE) and REMAP (mremap); not FORK (notifier.c says
 * why).
 *
 * One notifier per process: a range can be registered with one
 * userfaultfd only, and every context's MRs share the address space.
 *
 * The placement fence. The kernel delivers UNMAP after the pages are gone
 * and lets munmap() return as soon as the event is read. A remote WRITE
 * placed after that, but before the page table is invalidated, would land
 * in whatever the application maps there next: the corruption every
 * registration cache has had (libfabric, UCX, MPI). So every engine access
 * to registered memory (one socket call, one atomic) runs between
 * pw_notify_enter() and pw_notify_exit(), and the handler, before it reads
 * an event, raises a flag that holds new accesses back and waits for the
 * ones in progress to end (both sides seq_cst: an access either sees the
 * flag or is waited for). Events are read, the MRs updated, the flag
 * lowered: no access that began before munmap() returned can outlive the
 * event, and none after it sees the old page table. The wait is for
 * non-blocking socket calls only, never for a lock an application thread
 * could hold while calling munmap() (libfabric #5554).
 */
#ifndef PW_PAGING_NOTIFIER_H
#define PW_PAGING_NOTIFIER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct pw_mr_i;

extern atomic_int pw_notify_placing;	/* engine accesses in progress */
extern atomic_bool pw_notify_busy;	/* the handler is taking events */

/* Wait (yielding) until the handler has processed its events. */
void pw_notify_wait_idle(void);

/* Around every engine access to registered memory (see above). */
static inline void pw_notify_enter(void)
{
	for (;;) {
		atomic_fetch_add_explicit(&pw_notify_placing, 1,
					  memory_order_seq_cst);
		if (!atomic_load_explicit(&pw_notify_busy, memory_order_seq_cst))
			return;
		atomic_fetch_sub_explicit(&pw_notify_placing, 1,
					  memory_order_seq_cst);
		pw_notify_wait_idle();
	}
}

static inline void pw_notify_exit(void)
{
	atomic_fetch_sub_explicit(&pw_notify_placing, 1, memory_order_release);
}

/**
 * pw_notifier_get() - a context opens: start the notifier on first use
 *
 * Never fails: without userfaultfd (seccomp, no permission, an old
 * kernel) or with PW_NOTIFIER=off the process runs without it, says so
 * once on stderr, and pw_notifier_on() is false.
 */
void pw_notifier_get(void);
/* a context closes: the last one stops the handler thread */
void pw_notifier_put(void);
bool pw_notifier_on(void);
/* events handled since the process started (stats) */
uint64_t pw_notifier_events(void);

/**
 * pw_notifier_watch() - watch an explicit MR's range
 *
 * Return: 0 (watched, or the notifier is off: nothing can be), or
 * -EOPNOTSUPP when userfaultfd cannot watch this memory (a regular
 * file's mapping, device memory): pw_reg_mr() then refuses the MR unless
 * it was asked to follow the virtual address (PW_ACCESS_ODP_FOLLOW_VA).
 */
int pw_notifier_watch(struct pw_mr_i *mr);
void pw_notifier_unwatch(struct pw_mr_i *mr);
/* FOLLOW_VA: watch [s, e) of @mr again once a new mapping was faulted in */
void pw_notifier_rewatch(struct pw_mr_i *mr, uint64_t s, uint64_t e);

#endif /* PW_PAGING_NOTIFIER_H */
