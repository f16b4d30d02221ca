/* SPDX-License-Identifier: MIT */
/*
 * Device page table of an on-demand-paging MR: the user-space analogue of
 * an RDMA NIC's page table for ODP MRs (Linux ib_umem_odp with an
 * mmu_interval_notifier).
 *
 * One entry per page says whether the responder may place data there
 * without faulting first. Lookups are the hot path of every incoming op
 * and take no lock; faulters and invalidations are the slow path and
 * serialise on the table lock. An invalidation sequence number lets a
 * faulter populate pages with no lock held and still never mark a page
 * valid over an invalidation that raced with it:
 *
 *	again:
 *		seq = pw_pt_read_begin(pt);
 *		... populate the pages (madvise), no lock held ...
 *		pw_pt_lock(pt);
 *		if (pw_pt_read_retry(pt, seq)) {
 *			pw_pt_unlock(pt);
 *			goto again;
 *		}
 *		ret = pw_pt_set_valid_locked(pt, addr, len, write);
 *		pw_pt_unlock(pt);
 *
 * A lookup that returns true says the pages were valid at some instant
 * during the call; an invalidation may clear them right after. Whoever
 * needs "nothing placed after pw_pt_invalidate() returns" must drain its
 * placements itself (as pw_keytable_remove() drains MR uses).
 */
#ifndef PW_PAGING_PT_H
#define PW_PAGING_PT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Page entry bits, one _Atomic uint8_t per page. VALID: mapped and
 * populated, the responder may place data. WRITABLE: populated for write
 * (MADV_POPULATE_WRITE). ACCESSED: set by lookups, cleared by the CLOCK
 * scan of the memory budget manager. An entry is non-zero only if VALID.
 */
#define PW_PT_VALID	0x01
#define PW_PT_WRITABLE	0x02
#define PW_PT_ACCESSED	0x04

/* The only page size supported (see pw_pt_create()). */
#define PW_PT_PAGE_SHIFT	12
#define PW_PT_PAGE_SIZE		(UINT64_C(1) << PW_PT_PAGE_SHIFT)
/*
 * Geometry: a leaf holds 2^9 entries (2 MiB of 4 KiB pages), a directory
 * 2^9 child pointers (one 4 KiB node). An implicit table covers the 57-bit
 * user address space: 45 bits of page number = a leaf and 4 directory
 * levels. An explicit table gets only the levels its length needs.
 */
#define PW_PT_LEAF_SHIFT	9
#define PW_PT_DIR_SHIFT		9
#define PW_PT_VA_BITS		57

struct pw_pt;

/**
 * pw_pt_create() - allocate an empty page table
 * @start:    first byte of an explicit ODP MR (rounded down to a page)
 * @len:      its length; the end is rounded up to a page
 * @implicit: cover the whole user address space (every address below
 *            2^PW_PT_VA_BITS) instead; @start and @len are ignored
 *
 * Only the root node is allocated, so creating a table for a 1 TiB MR
 * takes constant time and memory; the tree grows as pages become valid.
 *
 * Return: the table, or NULL with errno EINVAL (explicit @len 0, @start +
 * @len overflowing, or a system page size other than PW_PT_PAGE_SIZE) or
 * ENOMEM.
 */
struct pw_pt *pw_pt_create(uint64_t start, uint64_t len, bool implicit);

/**
 * pw_pt_destroy() - free the table and every node of it
 * @pt: the table, or NULL
 *
 * No lookup or other call may be running on @pt.
 */
void pw_pt_destroy(struct pw_pt *pt);

/**
 * pw_pt_lookup() - may data be placed in [@addr, @addr + @len)?
 * @pt:            the table
 * @addr:          first byte
 * @len:           length in bytes; 0 always succeeds
 * @write:         the pages must also be WRITABLE
 * @first_missing: if non-NULL, set when the lookup fails
 *
 * Lock-free and allocation-free: callable concurrently with every other
 * table call except pw_pt_destroy(). Sets ACCESSED on each page found
 * valid, in address order up to the first miss (only where the bit is not
 * set yet, so a hot page's cache line is not written on every hit).
 *
 * On failure *@first_missing is the page-aligned address of the first page
 * of the range that is not VALID (or not WRITABLE for @write), which may
 * be the first page past the end of an explicit table. If the range starts
 * outside the table, or @addr + @len overflows, it is @addr itself.
 *
 * Return: true if every page overlapping the range is VALID (and WRITABLE
 * when @write).
 */
bool pw_pt_lookup(struct pw_pt *pt, uint64_t addr, uint64_t len, bool write,
		  uint64_t *first_missing);

/**
 * pw_pt_read_begin() - start a fault: snapshot the invalidation sequence
 * @pt: the table
 *
 * If an invalidation is in progress (odd sequence) this sleeps until it
 * has finished, so that the faulter does not populate pages that are
 * being invalidated only to retry.
 *
 * Return: the current sequence, always even.
 */
uint64_t pw_pt_read_begin(struct pw_pt *pt);

/**
 * pw_pt_read_retry() - did an invalidation start since pw_pt_read_begin()?
 * @pt:  the table
 * @seq: what pw_pt_read_begin() returned
 *
 * Call with the table lock held: only then can no invalidation start
 * between this check and the pw_pt_set_valid_locked() that follows.
 *
 * Return: true if the pages populated since @seq may have been
 * invalidated; the caller must then unlock and fault again.
 */
bool pw_pt_read_retry(struct pw_pt *pt, uint64_t seq);

/**
 * pw_pt_lock() - take the table lock (serialises all writers)
 * @pt: the table
 */
void pw_pt_lock(struct pw_pt *pt);

/**
 * pw_pt_unlock() - release the table lock
 * @pt: the table
 */
void pw_pt_unlock(struct pw_pt *pt);

/**
 * pw_pt_set_valid_locked() - mark populated pages valid
 * @pt:    the table, locked, with pw_pt_read_retry() just returned false
 * @addr:  first byte
 * @len:   length in bytes (0: nothing to do)
 * @write: also mark the pages WRITABLE (a read fault never clears it)
 *
 * Marks every page overlapping the range VALID and ACCESSED (a fault is a
 * use: the CLOCK passes over it once), allocating the leaves and
 * directories it needs. Nodes are allocated before any entry is marked,
 * so on failure no entry has changed.
 *
 * Return: 0, -EINVAL if the range is not wholly inside the table or
 * overflows, or -ENOMEM.
 */
int pw_pt_set_valid_locked(struct pw_pt *pt, uint64_t addr, uint64_t len,
			   bool write);

/**
 * pw_pt_invalidate() - clear every page overlapping a range
 * @pt:   the table, not locked by the caller
 * @addr: first byte
 * @len:  length in bytes; the range is clipped to the table
 *
 * Makes the sequence odd, clears all bits of every entry in the range,
 * makes the sequence even again and wakes pw_pt_read_begin() waiters, all
 * under the table lock. Every call counts as an invalidation and makes
 * pending faults retry, even when the range misses the table: spurious
 * retries are harmless, missed ones are not.
 *
 * Nodes are never freed before pw_pt_destroy(), because a lock-free lookup
 * may be reading one: memory is bounded by the 2 MiB regions ever made
 * valid (one 514-byte leaf each, plus the 4 KiB directories above them).
 */
void pw_pt_invalidate(struct pw_pt *pt, uint64_t addr, uint64_t len);

/**
 * pw_pt_invalidations() - number of pw_pt_invalidate() calls so far
 * @pt: the table
 *
 * Return: the count (the test hooks below count too).
 */
uint64_t pw_pt_invalidations(const struct pw_pt *pt);

/**
 * pw_pt_valid_pages() - number of pages currently VALID
 * @pt: the table
 *
 * Return: the count, exact whenever no writer is running.
 */
uint64_t pw_pt_valid_pages(const struct pw_pt *pt);

/**
 * pw_pt_mem_bytes() - memory held by the tree
 * @pt: the table
 *
 * Return: bytes allocated for leaves and directories, root included (the
 * struct pw_pt itself is not counted).
 */
size_t pw_pt_mem_bytes(const struct pw_pt *pt);

/**
 * pw_pt_clock_scan_locked() - advance the CLOCK hand over valid pages
 * @pt:          the table, locked
 * @max_pages:   stop after examining this many valid pages
 * @victims:     receives the addresses of pages not accessed since the
 *               last pass
 * @max_victims: capacity of @victims; stop when it is full
 *
 * Starting at a hand kept in the table, walks the valid pages in address
 * order, wrapping at the end. A page with ACCESSED set has it cleared; a
 * page without it is a victim. Victims stay valid: evicting them (and
 * invalidating them) is the caller's business. A call examines each valid
 * page at most once (at most one revolution), so @victims holds no
 * duplicates. The hand is left just past the last page examined, or where
 * it was if the revolution completed. Empty leaves and absent subtrees
 * are skipped without touching their entries.
 *
 * Return: the number of victims written to @victims (0 if @max_pages or
 * @max_victims is 0: nothing is examined then).
 */
size_t pw_pt_clock_scan_locked(struct pw_pt *pt, size_t max_pages,
			       uint64_t *victims, size_t max_victims);

/*
 * Test hooks only (tests/unit/core/test_pt.c): hold an invalidation open
 * without clearing anything, so a test can observe pw_pt_read_begin()
 * waiting. Each takes the table lock itself. Never call them elsewhere.
 */
void pw_pt_test_invalidate_begin(struct pw_pt *pt);
void pw_pt_test_invalidate_end(struct pw_pt *pt);

#endif /* PW_PAGING_PT_H */
