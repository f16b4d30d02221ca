/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the ODP device page table (src/paging/pt.c).
 *
 * The table decides whether the responder may place data into application
 * memory without faulting first, so a wrong "valid" is data written into
 * a page the kernel is about to drop, and a missed publication is a crash
 * in the hot path. The cases check exact per-page outcomes at every
 * boundary of the radix tree (page, 2 MiB leaf, directories, table ends),
 * that sparse tables stay small, that the begin/retry/set discipline never
 * marks a page valid over an invalidation it raced with, and (under TSan)
 * that lock-free lookups are safe while nodes are being published.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "paging/pt.h"
#include "util/util.h"

#include "unit.h"

#define PG		PW_PT_PAGE_SIZE
#define LEAF_SPAN	(PG << PW_PT_LEAF_SHIFT)		/* 2 MiB */
#define DIR1_SPAN	(LEAF_SPAN << PW_PT_DIR_SHIFT)	/* 1 GiB */
#define DIR2_SPAN	(DIR1_SPAN << PW_PT_DIR_SHIFT)	/* 512 GiB */
#define DIR3_SPAN	(DIR2_SPAN << PW_PT_DIR_SHIFT)	/* 256 TiB */
#define VA_END		(UINT64_C(1) << PW_PT_VA_BITS)
#define DIR_BYTES	((size_t)(1u << PW_PT_DIR_SHIFT) * sizeof(void *))

/* ---- helpers ------------------------------------------------------------ */

/* Deterministic pseudo-random numbers, so a failure reproduces. */
static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* Mark a range valid as a faulter would, with no race possible. */
static int set_valid(struct pw_pt *pt, uint64_t addr, uint64_t len,
		     bool write)
{
	int ret;

	pw_pt_lock(pt);
	ret = pw_pt_set_valid_locked(pt, addr, len, write);
	pw_pt_unlock(pt);
	return ret;
}

/* Check a lookup's result and, when it fails, the exact first miss. */
#define CHECK_LOOKUP(pt, addr, len, write, want_ok, want_missing)	\
	check_lookup(__LINE__, pt, addr, len, write, want_ok, want_missing)

static void check_lookup(int line, struct pw_pt *pt, uint64_t addr,
			 uint64_t len, bool write, bool want_ok,
			 uint64_t want_missing)
{
	uint64_t missing = UINT64_C(0xdeadbeef);
	bool ok = pw_pt_lookup(pt, addr, len, write, &missing);

	if (ok != want_ok) {
		UNIT_FAIL("line %d: lookup(%#" PRIx64 ", %#" PRIx64 ", %s) = %d, want %d",
			  line, addr, len, write ? "w" : "r", ok, want_ok);
		return;
	}
	if (!ok && missing != want_missing)
		UNIT_FAIL("line %d: lookup(%#" PRIx64 ", %#" PRIx64 ", %s): first_missing %#" PRIx64 ", want %#" PRIx64,
			  line, addr, len, write ? "w" : "r", missing,
			  want_missing);
	if (ok && missing != UINT64_C(0xdeadbeef))
		UNIT_FAIL("line %d: a successful lookup wrote first_missing",
			  line);
}

typedef void (*populate_fn)(struct pw_pt *pt, void *arg);

/*
 * One attempt of the fault discipline of pt.h; @populate stands for the
 * madvise done with no lock held, where invalidations can race.
 * Return: 0 if the pages were marked, -EAGAIN if the caller must retry.
 */
static int fault_once(struct pw_pt *pt, uint64_t addr, uint64_t len,
		      bool write, populate_fn populate, void *arg)
{
	uint64_t seq = pw_pt_read_begin(pt);
	int ret;

	if (seq & 1)
		UNIT_FAIL("read_begin returned odd sequence %#" PRIx64, seq);
	if (populate)
		populate(pt, arg);
	pw_pt_lock(pt);
	if (pw_pt_read_retry(pt, seq)) {
		pw_pt_unlock(pt);
		return -EAGAIN;
	}
	ret = pw_pt_set_valid_locked(pt, addr, len, write);
	pw_pt_unlock(pt);
	return ret;
}

struct inval_arg {
	uint64_t addr, len;
	int times;		/* invalidate on this many populate calls */
};

static void populate_invalidating(struct pw_pt *pt, void *arg)
{
	struct inval_arg *ia = arg;

	if (ia->times > 0) {
		ia->times--;
		pw_pt_invalidate(pt, ia->addr, ia->len);
	}
}

/* ---- tests -------------------------------------------------------------- */

/*
 * A small explicit table: rounding of an unaligned start and length, exact
 * bounds for lookup, set_valid and invalidate (outside the table a lookup
 * is false and reads nothing), and the constructor's EINVAL cases.
 */
static void test_create_bounds(void)
{
	const uint64_t base = UINT64_C(0x40000000);
	struct pw_pt *pt;

	/* 0x40000123 + 0x3000 ends at 0x40003123: pages 0x40000000..3000 */
	pt = pw_pt_create(base + 0x123, 0x3000, false);
	REQUIRE(pt);
	/* a table shorter than 2 MiB is a single leaf */
	CHECK(pw_pt_mem_bytes(pt) > 0 && pw_pt_mem_bytes(pt) < 1024);
	CHECK_U64(pw_pt_valid_pages(pt), 0);
	CHECK_U64(pw_pt_invalidations(pt), 0);
	CHECK_LOOKUP(pt, base, PG, false, false, base);
	CHECK_LOOKUP(pt, base, 0, true, true, 0);

	/* the rounded ends are inside; a byte further is not */
	CHECK_INT(set_valid(pt, base, 4 * PG, true), 0);
	CHECK_U64(pw_pt_valid_pages(pt), 4);
	CHECK_LOOKUP(pt, base, 4 * PG, true, true, 0);
	CHECK_LOOKUP(pt, base + 4 * PG - 1, 1, true, true, 0);
	CHECK_LOOKUP(pt, base + 0x123, 0x3000, false, true, 0);
	CHECK_LOOKUP(pt, base + 4 * PG, 1, false, false, base + 4 * PG);
	CHECK_LOOKUP(pt, base + 3 * PG, 2 * PG, false, false, base + 4 * PG);
	CHECK_LOOKUP(pt, base - 1, 2, false, false, base - 1);
	CHECK_LOOKUP(pt, base - PG, 2 * PG, false, false, base - PG);
	CHECK_LOOKUP(pt, 0, 1, false, false, 0);
	CHECK_LOOKUP(pt, UINT64_MAX - PG + 1, PG, false, false,
		     UINT64_MAX - PG + 1);
	/* overflowing ranges are false and report their start */
	CHECK_LOOKUP(pt, base, UINT64_MAX, false, false, base);
	CHECK_LOOKUP(pt, UINT64_MAX, 2, false, false, UINT64_MAX);
	CHECK(!pw_pt_lookup(pt, UINT64_MAX, 2, false, NULL));

	/* set_valid refuses ranges not wholly inside, and changes nothing */
	CHECK_INT(set_valid(pt, base + 4 * PG, 1, false), -EINVAL);
	CHECK_INT(set_valid(pt, base - PG, 2 * PG, false), -EINVAL);
	CHECK_INT(set_valid(pt, base + 3 * PG, 2 * PG, false), -EINVAL);
	CHECK_INT(set_valid(pt, base, UINT64_MAX, false), -EINVAL);
	CHECK_INT(set_valid(pt, 0, PG, false), -EINVAL);
	CHECK_INT(set_valid(pt, base, 0, false), 0);
	CHECK_U64(pw_pt_valid_pages(pt), 4);

	/* invalidate one page in the middle; a miss elsewhere is harmless */
	pw_pt_invalidate(pt, base + PG + 7, 1);
	CHECK_U64(pw_pt_valid_pages(pt), 3);
	CHECK_LOOKUP(pt, base, 4 * PG, false, false, base + PG);
	CHECK_LOOKUP(pt, base + 2 * PG, 2 * PG, true, true, 0);
	pw_pt_invalidate(pt, 0, PG);
	pw_pt_invalidate(pt, UINT64_MAX - PG, UINT64_MAX);
	CHECK_U64(pw_pt_valid_pages(pt), 3);
	/* an overflowing invalidation is clipped, not ignored */
	pw_pt_invalidate(pt, base - PG, UINT64_MAX);
	CHECK_U64(pw_pt_valid_pages(pt), 0);
	CHECK_LOOKUP(pt, base + 3 * PG, 1, false, false, base + 3 * PG);
	CHECK_U64(pw_pt_invalidations(pt), 4);
	pw_pt_destroy(pt);
	pw_pt_destroy(NULL);

	/* one byte still takes a page */
	pt = pw_pt_create(base + PG - 1, 1, false);
	REQUIRE(pt);
	CHECK_INT(set_valid(pt, base, PG, false), 0);
	CHECK_INT(set_valid(pt, base + PG, 1, false), -EINVAL);
	CHECK_LOOKUP(pt, base + PG - 1, 1, false, true, 0);
	pw_pt_destroy(pt);

	CHECK_NULL_ERRNO(pw_pt_create(base, 0, false), EINVAL);
	CHECK_NULL_ERRNO(pw_pt_create(0, 0, false), EINVAL);
	CHECK_NULL_ERRNO(pw_pt_create(UINT64_MAX - 0xfff, 0x2000, false),
			 EINVAL);
	CHECK_NULL_ERRNO(pw_pt_create(1, UINT64_MAX, false), EINVAL);
	/* the end fits but rounding it up to a page does not */
	CHECK_NULL_ERRNO(pw_pt_create(UINT64_MAX - 0x10, 0x8, false), EINVAL);
	/* the highest registrable page */
	pt = pw_pt_create(UINT64_MAX - 2 * PG + 1, PG, false);
	REQUIRE(pt);
	CHECK_INT(set_valid(pt, UINT64_MAX - 2 * PG + 1, PG, true), 0);
	CHECK_LOOKUP(pt, UINT64_MAX - 2 * PG + 1, PG, true, true, 0);
	CHECK_LOOKUP(pt, UINT64_MAX - PG + 1, PG, true, false,
		     UINT64_MAX - PG + 1);
	pw_pt_destroy(pt);
	/* implicit ignores start and len */
	pt = pw_pt_create(0, 0, true);
	REQUIRE(pt);
	pw_pt_destroy(pt);
}

/* Set [at - before, at + after) valid and check every edge of it. */
static void check_boundary(struct pw_pt *pt, uint64_t at)
{
	CHECK_INT(set_valid(pt, at - 2 * PG, 4 * PG, true), 0);
	CHECK_LOOKUP(pt, at - 2 * PG, 4 * PG, true, true, 0);
	CHECK_LOOKUP(pt, at - 1, 2, true, true, 0);
	CHECK_LOOKUP(pt, at - 3 * PG, 5 * PG, false, false, at - 3 * PG);
	CHECK_LOOKUP(pt, at - 3 * PG + 1, 2, false, false, at - 3 * PG);
	CHECK_LOOKUP(pt, at, 3 * PG, false, false, at + 2 * PG);
	CHECK_LOOKUP(pt, at + 2 * PG - 1, 2, true, false, at + 2 * PG);
	/* a hole right at the boundary, from either side */
	pw_pt_invalidate(pt, at, 1);
	CHECK_LOOKUP(pt, at - 2 * PG, 4 * PG, false, false, at);
	CHECK_LOOKUP(pt, at - 2 * PG, 2 * PG, false, true, 0);
	CHECK_LOOKUP(pt, at + PG, PG, false, true, 0);
	CHECK_LOOKUP(pt, at - 1, 2, false, false, at);
	pw_pt_invalidate(pt, at - 2 * PG, 4 * PG);
	CHECK_LOOKUP(pt, at - 2 * PG, 4 * PG, false, false, at - 2 * PG);
}

/*
 * Ranges crossing page, leaf (2 MiB) and each directory boundary of the
 * implicit tree, and of an explicit tree whose boundaries are relative to
 * an unaligned start; first_missing exact; VALID without WRITABLE passes a
 * read lookup and fails a write lookup.
 */
static void test_lookup_ranges(void)
{
	struct pw_pt *pt = pw_pt_create(0, 0, true);
	const uint64_t at = LEAF_SPAN;
	uint64_t start;

	REQUIRE(pt);
	/* read-only pages across the first leaf boundary */
	CHECK_INT(set_valid(pt, at - 2 * PG, 4 * PG, false), 0);
	CHECK_LOOKUP(pt, at - 2 * PG, 4 * PG, false, true, 0);
	CHECK_LOOKUP(pt, at - 2 * PG, 4 * PG, true, false, at - 2 * PG);
	CHECK_LOOKUP(pt, at - 1, 2, false, true, 0);
	CHECK_LOOKUP(pt, at - 3 * PG, 4 * PG, false, false, at - 3 * PG);
	CHECK_LOOKUP(pt, at - PG, 4 * PG, false, false, at + 2 * PG);
	CHECK_LOOKUP(pt, at + 2 * PG - 1, 2, false, false, at + 2 * PG);

	/* write fault on one page: only that page passes write lookups */
	CHECK_INT(set_valid(pt, at, PG, true), 0);
	CHECK_LOOKUP(pt, at, PG, true, true, 0);
	CHECK_LOOKUP(pt, at + 5, PG - 5, true, true, 0);
	CHECK_LOOKUP(pt, at - PG, 2 * PG, true, false, at - PG);
	CHECK_LOOKUP(pt, at, 2 * PG, true, false, at + PG);
	CHECK_LOOKUP(pt, at - 2 * PG, 4 * PG, false, true, 0);
	/* a later read fault does not take WRITABLE away */
	CHECK_INT(set_valid(pt, at - PG, 2 * PG, false), 0);
	CHECK_LOOKUP(pt, at, PG, true, true, 0);
	CHECK_U64(pw_pt_valid_pages(pt), 4);
	pw_pt_invalidate(pt, 0, 2 * LEAF_SPAN);
	CHECK_U64(pw_pt_valid_pages(pt), 0);

	/* leaf, level-1, level-2 and level-3 directory boundaries */
	check_boundary(pt, 7 * LEAF_SPAN);
	check_boundary(pt, DIR1_SPAN);
	check_boundary(pt, 3 * DIR1_SPAN);
	check_boundary(pt, DIR2_SPAN);
	check_boundary(pt, DIR3_SPAN);
	check_boundary(pt, 5 * DIR3_SPAN);
	CHECK_U64(pw_pt_valid_pages(pt), 0);

	/* the top of the 57-bit space */
	CHECK_INT(set_valid(pt, VA_END - PG, PG, true), 0);
	CHECK_LOOKUP(pt, VA_END - PG, PG, true, true, 0);
	CHECK_LOOKUP(pt, VA_END - PG, PG + 1, true, false, VA_END);
	CHECK_LOOKUP(pt, VA_END, PG, false, false, VA_END);
	CHECK_LOOKUP(pt, UINT64_MAX - PG + 1, PG, false, false,
		     UINT64_MAX - PG + 1);
	CHECK_INT(set_valid(pt, VA_END - PG, 2 * PG, true), -EINVAL);
	CHECK_INT(set_valid(pt, VA_END, PG, true), -EINVAL);
	/* and the bottom: page 0 is a user page like any other here */
	CHECK_INT(set_valid(pt, 0, PG, false), 0);
	CHECK_LOOKUP(pt, 0, PG, false, true, 0);
	CHECK_LOOKUP(pt, 0, PG + 1, false, false, PG);
	pw_pt_destroy(pt);

	/*
	 * Explicit, 3 GiB from an address that is not 2 MiB aligned: its
	 * leaves and directories start at the table's first page, so the
	 * boundaries are at start + 2 MiB and start + 1 GiB.
	 */
	start = UINT64_C(0x7f0000123000);
	pt = pw_pt_create(start, 3 * DIR1_SPAN, false);
	REQUIRE(pt);
	check_boundary(pt, start + LEAF_SPAN);
	check_boundary(pt, start + DIR1_SPAN);
	check_boundary(pt, start + 2 * DIR1_SPAN + 5 * LEAF_SPAN);
	/* the first and last pages, and just outside either end */
	CHECK_INT(set_valid(pt, start, PG, false), 0);
	CHECK_INT(set_valid(pt, start + 3 * DIR1_SPAN - PG, PG, false), 0);
	CHECK_LOOKUP(pt, start, PG, false, true, 0);
	CHECK_LOOKUP(pt, start - 1, 2, false, false, start - 1);
	CHECK_LOOKUP(pt, start + 3 * DIR1_SPAN - PG, PG, false, true, 0);
	CHECK_LOOKUP(pt, start + 3 * DIR1_SPAN - PG, PG + 1, false, false,
		     start + 3 * DIR1_SPAN);
	CHECK_LOOKUP(pt, start + 3 * DIR1_SPAN, 1, false, false,
		     start + 3 * DIR1_SPAN);
	CHECK_U64(pw_pt_valid_pages(pt), 2);
	pw_pt_destroy(pt);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static bool in_set(const uint64_t *set, size_t n, uint64_t v)
{
	return bsearch(&v, set, n, sizeof(*set), cmp_u64) != NULL;
}

/*
 * 64 single pages scattered over the whole 57-bit space of an implicit
 * table: every page and both its neighbours give the exact answer, and the
 * tree costs at most one leaf and three directories per page (a flat array
 * of leaf pointers would be 512 GiB).
 */
static void test_implicit_sparse(void)
{
	enum { N = 64 };
	struct pw_pt *pt = pw_pt_create(0, 0, true);
	uint64_t pages[N], sorted[N], rng = 42;
	size_t root, leaf, n = 0;

	REQUIRE(pt);
	/* only the root exists, a single directory node */
	root = pw_pt_mem_bytes(pt);
	CHECK_U64(root, DIR_BYTES);

	/*
	 * First a page in a fresh subtree costs a leaf and three
	 * directories; its neighbour nothing; the next leaf exactly a leaf.
	 */
	CHECK_INT(set_valid(pt, 0x1000, PG, false), 0);
	leaf = pw_pt_mem_bytes(pt) - root - 3 * DIR_BYTES;
	CHECK(leaf >= LEAF_SPAN / PG && leaf <= 1024);
	CHECK_INT(set_valid(pt, 0x2000, PG, false), 0);
	CHECK_U64(pw_pt_mem_bytes(pt), root + 3 * DIR_BYTES + leaf);
	CHECK_INT(set_valid(pt, LEAF_SPAN, PG, false), 0);
	CHECK_U64(pw_pt_mem_bytes(pt), root + 3 * DIR_BYTES + 2 * leaf);
	pw_pt_invalidate(pt, 0, 2 * LEAF_SPAN);
	/* invalidation never frees (lock-free lookups may be inside) */
	CHECK_U64(pw_pt_mem_bytes(pt), root + 3 * DIR_BYTES + 2 * leaf);
	CHECK_U64(pw_pt_valid_pages(pt), 0);

	pages[n++] = 0x1000;
	pages[n++] = UINT64_C(0x7ffffffff000);
	pages[n++] = VA_END - PG;
	pages[n++] = UINT64_C(0x800000000000);
	while (n < N) {
		/* a random magnitude too, so that low regions get pages */
		unsigned int bits = 13 + (unsigned int)(splitmix64(&rng) % 45);
		uint64_t a = splitmix64(&rng) & ((UINT64_C(1) << bits) - 1);

		bool dup = false;

		a &= ~(PG - 1);
		for (size_t i = 0; i < n; i++)
			dup |= pages[i] == a;
		if (!dup)
			pages[n++] = a;
	}
	memcpy(sorted, pages, sizeof(pages));
	qsort(sorted, N, sizeof(sorted[0]), cmp_u64);

	for (size_t i = 0; i < N; i++)
		CHECK_INT(set_valid(pt, pages[i], PG, i & 1), 0);
	CHECK_U64(pw_pt_valid_pages(pt), N);
	for (size_t i = 0; i < N; i++) {
		uint64_t a = pages[i];
		bool prev = a && in_set(sorted, N, a - PG);
		bool next = a + PG < VA_END && in_set(sorted, N, a + PG);

		CHECK_LOOKUP(pt, a, PG, false, true, 0);
		CHECK_LOOKUP(pt, a, PG, true, i & 1, a);
		CHECK_LOOKUP(pt, a + 100, 10, false, true, 0);
		if (a)
			CHECK_LOOKUP(pt, a - PG, PG, false, prev, a - PG);
		if (a + PG < VA_END)
			CHECK_LOOKUP(pt, a + PG, PG, false, next, a + PG);
		if (!next)
			CHECK_LOOKUP(pt, a, 2 * PG, false, false, a + PG);
	}
	/* explicit bound: < 64 * (1 KiB leaf + 3 * 4 KiB dirs) + the root */
	CHECK(pw_pt_mem_bytes(pt) <=
	      root + (size_t)N * (3 * DIR_BYTES + leaf));
	CHECK(pw_pt_mem_bytes(pt) < (size_t)N * (1024 + 3 * 4096) + 4096);
	printf("implicit_sparse: %d pages, %zu bytes of tree\n", N,
	       pw_pt_mem_bytes(pt));

	pw_pt_invalidate(pt, 0, UINT64_MAX);
	CHECK_U64(pw_pt_valid_pages(pt), 0);
	for (size_t i = 0; i < N; i++)
		CHECK_LOOKUP(pt, pages[i], PG, false, false, pages[i]);
	pw_pt_destroy(pt);
}

/*
 * A 1 TiB explicit table: creation allocates only the root (O(1) memory)
 * and takes well under a millisecond; a page near the end works.
 */
static void test_huge_explicit(void)
{
	const uint64_t start = UINT64_C(0x10000000000);
	const uint64_t len = UINT64_C(1) << 40;
	const uint64_t last = start + len - PG;
	uint64_t best = UINT64_MAX;
	struct pw_pt *pt = NULL;

	/* best of a few, so that a preemption cannot fail the case */
	for (int i = 0; i < 8; i++) {
		uint64_t t0 = unit_now_ns(), dt;

		pw_pt_destroy(pt);
		pt = pw_pt_create(start, len, false);
		dt = unit_now_ns() - t0;
		REQUIRE(pt);
		best = PW_MIN(best, dt);
	}
	printf("huge_explicit: create 1 TiB in %" PRIu64 " ns\n", best);
	CHECK(best < 1000000);
	CHECK_U64(pw_pt_mem_bytes(pt), DIR_BYTES);
	CHECK_U64(pw_pt_valid_pages(pt), 0);

	CHECK_INT(set_valid(pt, last, PG, true), 0);
	CHECK_LOOKUP(pt, last, PG, true, true, 0);
	CHECK_LOOKUP(pt, last - PG, 2 * PG, false, false, last - PG);
	CHECK_LOOKUP(pt, last, 2 * PG, false, false, start + len);
	CHECK_LOOKUP(pt, start, PG, false, false, start);
	CHECK_LOOKUP(pt, start + len / 2, PG, false, false, start + len / 2);
	CHECK_U64(pw_pt_valid_pages(pt), 1);
	/* one leaf and the two directories under the root */
	CHECK(pw_pt_mem_bytes(pt) <= 3 * DIR_BYTES + 1024);
	/*
	 * A scan of an almost empty 1 TiB table visits one leaf: the first
	 * pass clears the bit the lookups set, the second finds the victim.
	 */
	{
		uint64_t v[4] = { 0 };

		pw_pt_lock(pt);
		CHECK_INT(pw_pt_clock_scan_locked(pt, 16, v, 4), 0);
		CHECK_INT(pw_pt_clock_scan_locked(pt, 16, v, 4), 1);
		pw_pt_unlock(pt);
		CHECK_U64(v[0], last);
	}
	pw_pt_invalidate(pt, start, len);
	CHECK_LOOKUP(pt, last, PG, false, false, last);
	CHECK_U64(pw_pt_valid_pages(pt), 0);
	pw_pt_destroy(pt);

	/* implicit: the same O(1) creation */
	pt = pw_pt_create(0, 0, true);
	REQUIRE(pt);
	CHECK_U64(pw_pt_mem_bytes(pt), DIR_BYTES);
	pw_pt_destroy(pt);
}

/*
 * read_begin / read_retry: any invalidation between them (whatever its
 * range) makes retry true, none makes it false, and the fault pattern
 * leaves the page invalid when an invalidation ran during "populate".
 */
static void test_seq_discipline(void)
{
	const uint64_t base = UINT64_C(0x200000000);
	struct pw_pt *pt = pw_pt_create(base, 16 * PG, false);
	struct inval_arg ia;
	uint64_t s, s2;
	int attempts;

	REQUIRE(pt);
	s = pw_pt_read_begin(pt);
	CHECK((s & 1) == 0);
	pw_pt_lock(pt);
	CHECK(!pw_pt_read_retry(pt, s));
	pw_pt_unlock(pt);

	/* a range far outside the table still counts */
	pw_pt_invalidate(pt, 0, PG);
	pw_pt_lock(pt);
	CHECK(pw_pt_read_retry(pt, s));
	pw_pt_unlock(pt);

	s2 = pw_pt_read_begin(pt);
	CHECK((s2 & 1) == 0);
	CHECK(s2 != s);
	pw_pt_lock(pt);
	CHECK(!pw_pt_read_retry(pt, s2));
	CHECK(pw_pt_read_retry(pt, s));
	pw_pt_unlock(pt);
	CHECK(!pw_pt_read_retry(pt, s2));
	CHECK_U64(pw_pt_read_begin(pt), s2);

	/* an invalidation of the page while it is being populated */
	ia = (struct inval_arg){ .addr = base, .len = PG, .times = 1 };
	CHECK_INT(fault_once(pt, base, PG, true, populate_invalidating, &ia),
		  -EAGAIN);
	CHECK_INT(ia.times, 0);
	CHECK_LOOKUP(pt, base, PG, false, false, base);
	CHECK_U64(pw_pt_valid_pages(pt), 0);
	/* undisturbed, the same fault succeeds */
	CHECK_INT(fault_once(pt, base, PG, true, NULL, NULL), 0);
	CHECK_LOOKUP(pt, base, PG, true, true, 0);

	/*
	 * An invalidation of another range also forces a retry (the table
	 * cannot tell it was harmless), and leaves the valid page alone.
	 */
	ia = (struct inval_arg){ .addr = base + 8 * PG, .len = PG, .times = 1 };
	CHECK_INT(fault_once(pt, base + PG, PG, false, populate_invalidating,
			     &ia), -EAGAIN);
	CHECK_LOOKUP(pt, base, 2 * PG, false, false, base + PG);

	/* the retry loop: two disturbed attempts, the third marks */
	ia = (struct inval_arg){ .addr = base, .len = 4 * PG, .times = 2 };
	attempts = 0;
	for (;;) {
		int ret = fault_once(pt, base, 4 * PG, false,
				     populate_invalidating, &ia);

		attempts++;
		if (ret != -EAGAIN) {
			CHECK_INT(ret, 0);
			break;
		}
		CHECK_LOOKUP(pt, base, PG, false, false, base);
		if (attempts > 10)
			break;
	}
	CHECK_INT(attempts, 3);
	CHECK_LOOKUP(pt, base, 4 * PG, false, true, 0);
	/* the write bit of page 0 went with the invalidation */
	CHECK_LOOKUP(pt, base, PG, true, false, base);
	CHECK_U64(pw_pt_valid_pages(pt), 4);
	CHECK_U64(pw_pt_invalidations(pt), 5);
	pw_pt_destroy(pt);
}

/*
 * Invalidating an unaligned sub-range of a fully valid table clears
 * exactly the pages it overlaps, across leaves; the counters are exact
 * and re-validating counts each page once.
 */
static void test_invalidate_clears(void)
{
	enum { NPAGES = 3 * (LEAF_SPAN / PG) };	/* 1536: three leaves */
	const uint64_t base = UINT64_C(0x7f0000000000);
	struct pw_pt *pt = pw_pt_create(base, NPAGES * PG, false);
	uint64_t victim;
	size_t bad = 0;

	REQUIRE(pt);
	CHECK_INT(set_valid(pt, base, NPAGES * PG, true), 0);
	CHECK_U64(pw_pt_valid_pages(pt), NPAGES);
	/* again: nothing is counted twice */
	CHECK_INT(set_valid(pt, base, NPAGES * PG, false), 0);
	CHECK_U64(pw_pt_valid_pages(pt), NPAGES);

	/* bytes 100 pages + 123 .. 800 pages + 122: pages 100..800 */
	pw_pt_invalidate(pt, base + 100 * PG + 123, 700 * PG);
	CHECK_U64(pw_pt_valid_pages(pt), NPAGES - 701);
	CHECK_U64(pw_pt_invalidations(pt), 1);
	for (uint64_t i = 0; i < NPAGES; i++) {
		bool want = i < 100 || i > 800;

		if (pw_pt_lookup(pt, base + i * PG, PG, true, NULL) != want)
			bad++;
	}
	CHECK_INT(bad, 0);
	CHECK_LOOKUP(pt, base, NPAGES * PG, false, false, base + 100 * PG);
	CHECK_LOOKUP(pt, base + 801 * PG, (NPAGES - 801) * PG, true, true, 0);
	CHECK_LOOKUP(pt, base + 99 * PG, PG, true, true, 0);

	/* a zero-length invalidation clears nothing but still counts */
	pw_pt_invalidate(pt, base + 5 * PG, 0);
	CHECK_U64(pw_pt_valid_pages(pt), NPAGES - 701);
	CHECK_U64(pw_pt_invalidations(pt), 2);
	CHECK_LOOKUP(pt, base + 5 * PG, PG, true, true, 0);

	/* re-validate part of the hole: only the new pages count */
	CHECK_INT(set_valid(pt, base + 50 * PG, 100 * PG, false), 0);
	CHECK_U64(pw_pt_valid_pages(pt), NPAGES - 701 + 50);
	CHECK_LOOKUP(pt, base + 50 * PG, 100 * PG, false, true, 0);
	CHECK_LOOKUP(pt, base + 50 * PG, 100 * PG, true, false,
		     base + 100 * PG);

	pw_pt_invalidate(pt, base, NPAGES * PG);
	pw_pt_invalidate(pt, base, NPAGES * PG);
	CHECK_U64(pw_pt_valid_pages(pt), 0);
	CHECK_U64(pw_pt_invalidations(pt), 4);
	bad = 0;
	for (uint64_t i = 0; i < NPAGES; i++)
		if (pw_pt_lookup(pt, base + i * PG, PG, false, NULL))
			bad++;
	CHECK_INT(bad, 0);

	/*
	 * All bits go with an invalidation; faulting again sets VALID and
	 * ACCESSED afresh (a fault is a use), never WRITABLE left over: the
	 * clock's first pass clears ACCESSED, the second takes the page.
	 */
	CHECK_INT(set_valid(pt, base + 7 * PG, PG, true), 0);
	CHECK_LOOKUP(pt, base + 7 * PG, PG, true, true, 0);
	pw_pt_invalidate(pt, base + 7 * PG, PG);
	CHECK_INT(set_valid(pt, base + 7 * PG, PG, false), 0);
	CHECK_LOOKUP(pt, base + 7 * PG, PG, true, false, base + 7 * PG);
	pw_pt_lock(pt);
	CHECK_INT(pw_pt_clock_scan_locked(pt, 10, &victim, 1), 0);
	CHECK_INT(pw_pt_clock_scan_locked(pt, 10, &victim, 1), 1);
	pw_pt_unlock(pt);
	CHECK_U64(victim, base + 7 * PG);
	pw_pt_destroy(pt);
}

static size_t scan(struct pw_pt *pt, size_t max_pages, uint64_t *v,
		   size_t max_victims)
{
	size_t n;

	pw_pt_lock(pt);
	n = pw_pt_clock_scan_locked(pt, max_pages, v, max_victims);
	pw_pt_unlock(pt);
	return n;
}

/* A scan returned exactly these victims, in this order. */
#define CHECK_VICTIMS(got, v, ...)					\
	do {								\
		const uint64_t vw_[] = { __VA_ARGS__ };			\
		check_victims(__LINE__, (got), (v), vw_,		\
			      sizeof(vw_) / sizeof(vw_[0]));		\
	} while (0)

static void check_victims(int line, size_t got, const uint64_t *v,
			  const uint64_t *want, size_t nwant)
{
	if (got != nwant) {
		UNIT_FAIL("line %d: scan returned %zu victims, want %zu", line,
			  got, nwant);
		return;
	}
	for (size_t i = 0; i < nwant; i++)
		if (v[i] != want[i])
			UNIT_FAIL("line %d: victim %zu = %#" PRIx64 ", want %#" PRIx64,
				  line, i, v[i], want[i]);
}

/*
 * CLOCK: lookups set ACCESSED, a scan clears it, the next scan returns the
 * pages still unused as victims (without invalidating them); the hand
 * persists between calls, wraps at the end of the table, and one call
 * never returns a page twice.
 */
static void test_accessed_clock(void)
{
	const uint64_t base = UINT64_C(0x600000000);
	/* two leaves; D is the very last page of the table */
	const uint64_t A = base + 3 * PG, B = base + 600 * PG,
		       C = base + 1000 * PG, D = base + 1023 * PG;
	struct pw_pt *pt = pw_pt_create(base, 1024 * PG, false);
	uint64_t v[8];

	REQUIRE(pt);
	CHECK_INT(scan(pt, 100, v, 8), 0);
	CHECK_INT(set_valid(pt, A, PG, false), 0);
	CHECK_INT(set_valid(pt, B, PG, true), 0);
	CHECK_INT(set_valid(pt, C, PG, false), 0);
	CHECK_INT(set_valid(pt, D, PG, false), 0);

	/*
	 * Faulted but never looked up: a fault is a use, so the first pass
	 * only clears ACCESSED (a DROP retry comes back after a back-off and
	 * must find its page); the second takes them, in order.
	 */
	CHECK_INT(scan(pt, 100, v, 8), 0);
	CHECK_VICTIMS(scan(pt, 100, v, 8), v, A, B, C, D);
	/* victims stay valid */
	CHECK_U64(pw_pt_valid_pages(pt), 4);

	/* looked up: first pass clears, second pass returns them */
	CHECK_LOOKUP(pt, A, PG, false, true, 0);
	CHECK_LOOKUP(pt, B, PG, true, true, 0);
	CHECK_LOOKUP(pt, C, 1, false, true, 0);
	CHECK_LOOKUP(pt, D, PG, false, true, 0);
	CHECK_INT(scan(pt, 100, v, 8), 0);
	CHECK_VICTIMS(scan(pt, 100, v, 8), v, A, B, C, D);

	/* only the page used in between survives the next pass */
	CHECK_LOOKUP(pt, B, PG, false, true, 0);
	CHECK_VICTIMS(scan(pt, 100, v, 8), v, A, C, D);
	/* a failed lookup still marks the pages it found valid before */
	CHECK_LOOKUP(pt, C, 2 * PG, false, false, C + PG);
	CHECK_VICTIMS(scan(pt, 100, v, 8), v, A, B, D);

	/* the hand: stop after two pages examined ... */
	for (uint64_t p = A; p <= D; p += PG)
		pw_pt_lookup(pt, p, PG, false, NULL);
	CHECK_INT(scan(pt, 2, v, 8), 0);		/* A, B cleared */
	/* ... the next call starts at C, D, wraps to A (now a victim) */
	CHECK_VICTIMS(scan(pt, 3, v, 8), v, A);	/* C, D cleared */
	/* stop on a full victim array: B, C; the hand stays after C */
	CHECK_VICTIMS(scan(pt, 100, v, 2), v, B, C);
	/* D, then wrap: A, B, C (a revolution never repeats a page) */
	CHECK_VICTIMS(scan(pt, 100, v, 8), v, D, A, B, C);
	/* stopping on the last page of the table wraps the hand to 0 */
	CHECK_VICTIMS(scan(pt, 1, v, 8), v, D);
	CHECK_VICTIMS(scan(pt, 1, v, 8), v, A);
	CHECK_VICTIMS(scan(pt, 100, v, 1), v, B);
	CHECK_VICTIMS(scan(pt, 3, v, 8), v, C, D, A);
	CHECK_VICTIMS(scan(pt, 1, v, 8), v, B);

	/* nothing to do with no room or no budget */
	CHECK_INT(scan(pt, 0, v, 8), 0);
	CHECK_INT(scan(pt, 8, v, 0), 0);

	/* invalid pages are never examined */
	pw_pt_invalidate(pt, B, PG);
	pw_pt_invalidate(pt, D, PG);
	CHECK_VICTIMS(scan(pt, 100, v, 8), v, C, A);
	pw_pt_invalidate(pt, base, 1024 * PG);
	CHECK_INT(scan(pt, 100, v, 8), 0);
	pw_pt_destroy(pt);
}

/* ---- concurrency -------------------------------------------------------- */

struct race {
	struct pw_pt *pt;
	uint64_t addr, len;
	atomic_bool stop;
	/* invalidations begun: stored before each pw_pt_invalidate() call */
	atomic_uint_fast64_t inv_started;
	/*
	 * inv_started as seen by the faulter just after the read_begin of
	 * the fault that last marked the range (table lock).
	 */
	uint64_t set_by;
	uint64_t sets, retries, violations, torn, invals;
	uint64_t hits, misses, bad_missing;
};

/*
 * Busy work of a random length up to ~@max loop turns: stands for the
 * madvise of a fault, and opens the windows in which the threads
 * interleave (without it the faulter almost never reaches the lock between
 * an invalidation and the check after it). No sleeping: no timing slack.
 */
static void spin(uint64_t *rng, unsigned int max)
{
	static atomic_uint sink;
	unsigned int n = (unsigned int)(splitmix64(rng) % max);

	for (unsigned int i = 0; i < n; i++)
		atomic_fetch_add_explicit(&sink, 1, memory_order_relaxed);
}

static void *race_faulter(void *arg)
{
	struct race *r = arg;
	uint64_t rng = 99;

	while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
		uint64_t seq = pw_pt_read_begin(r->pt);
		uint64_t started = atomic_load(&r->inv_started);

		spin(&rng, 256);
		pw_pt_lock(r->pt);
		if (pw_pt_read_retry(r->pt, seq)) {
			pw_pt_unlock(r->pt);
			r->retries++;
			continue;
		}
		if (pw_pt_set_valid_locked(r->pt, r->addr, r->len, true) == 0)
			r->set_by = started;
		r->sets++;
		pw_pt_unlock(r->pt);
	}
	return NULL;
}

static void *race_reader(void *arg)
{
	struct race *r = arg;

	while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
		uint64_t missing;

		if (pw_pt_lookup(r->pt, r->addr, r->len, true, &missing)) {
			r->hits++;
		} else {
			r->misses++;
			if (missing != r->addr && missing != r->addr + PG)
				r->bad_missing++;
		}
	}
	return NULL;
}

/*
 * Faulter and invalidator race on a two-page range that straddles a leaf
 * boundary. The invariant: once pw_pt_invalidate() (the n-th) has
 * returned, the range may be valid only if it was marked by a fault whose
 * read_begin came after invalidation n began, i.e. one that saw
 * inv_started >= n. A reader looks the range up lock-free all along.
 */
static void race_phase_fault_invalidate(void)
{
	const uint64_t budget_ns = 500000000;	/* 0.5 s */
	struct race r = { 0 };
	pthread_t fth, rth;
	uint64_t t0, n = 0, rng = 5;
	int ret;

	r.pt = pw_pt_create(0, 0, true);
	REQUIRE(r.pt);
	r.addr = LEAF_SPAN - PG;
	r.len = 2 * PG;
	REQUIRE(pthread_create(&fth, NULL, race_faulter, &r) == 0);
	REQUIRE(pthread_create(&rth, NULL, race_reader, &r) == 0);
	t0 = unit_now_ns();
	while (n < 200000 && unit_now_ns() - t0 < budget_ns) {
		bool v0, v1;

		atomic_store(&r.inv_started, ++n);
		pw_pt_invalidate(r.pt, r.addr, r.len);
		spin(&rng, 256);
		pw_pt_lock(r.pt);
		v0 = pw_pt_lookup(r.pt, r.addr, PG, true, NULL);
		v1 = pw_pt_lookup(r.pt, r.addr + PG, PG, true, NULL);
		/* set_valid and invalidate are atomic under the lock */
		if (v0 != v1)
			r.torn++;
		if ((v0 || v1) && r.set_by < n)
			r.violations++;
		pw_pt_unlock(r.pt);
	}
	atomic_store(&r.stop, true);
	REQUIRE(pthread_join(fth, NULL) == 0);
	REQUIRE(pthread_join(rth, NULL) == 0);
	printf("race: %" PRIu64 " invalidations, %" PRIu64 " sets, %" PRIu64
	       " retries, %" PRIu64 " hits, %" PRIu64 " misses\n",
	       n, r.sets, r.retries, r.hits, r.misses);
	CHECK_U64(r.violations, 0);
	CHECK_U64(r.torn, 0);
	CHECK_U64(r.bad_missing, 0);
	CHECK_U64(pw_pt_invalidations(r.pt), n);

	/* deterministic end: the counters agree with the entries */
	CHECK(pw_pt_valid_pages(r.pt) == 0 || pw_pt_valid_pages(r.pt) == 2);
	CHECK_INT(pw_pt_lookup(r.pt, r.addr, r.len, true, NULL),
		  pw_pt_valid_pages(r.pt) == 2);
	pw_pt_invalidate(r.pt, r.addr, r.len);
	CHECK_U64(pw_pt_valid_pages(r.pt), 0);
	CHECK_LOOKUP(r.pt, r.addr, r.len, false, false, r.addr);
	ret = fault_once(r.pt, r.addr, r.len, true, NULL, NULL);
	CHECK_INT(ret, 0);
	CHECK_LOOKUP(r.pt, r.addr, r.len, true, true, 0);
	CHECK_U64(pw_pt_valid_pages(r.pt), 2);
	pw_pt_destroy(r.pt);
}

enum { PUB_PAGES = 2048 };

struct publish {
	struct pw_pt *pt;
	uint64_t addrs[PUB_PAGES];
	atomic_size_t published;	/* addrs[0 .. published) are valid */
	uint64_t lost, checks, early_hits;
};

static void *publish_reader(void *arg)
{
	struct publish *p = arg;
	uint64_t rng = 7;

	for (;;) {
		size_t n = atomic_load_explicit(&p->published,
						memory_order_acquire);
		size_t j;

		if (n == PUB_PAGES)
			break;
		/*
		 * The pages being published right now: the lookups race
		 * with the allocation and publication of their nodes.
		 */
		for (size_t k = n; k < PW_MIN(n + 4, (size_t)PUB_PAGES); k++)
			if (pw_pt_lookup(p->pt, p->addrs[k], PG, false, NULL))
				p->early_hits++;
		if (n) {
			j = (size_t)(splitmix64(&rng) % n);
			if (!pw_pt_lookup(p->pt, p->addrs[j], PG, j & 1, NULL))
				p->lost++;
			p->checks++;
		}
	}
	return NULL;
}

/*
 * A writer makes pages valid in fresh leaves and fresh directories while a
 * reader looks up the pages being published (TSan checks that node
 * publication is ordered) and pages published earlier (always valid).
 */
static void race_phase_publication(void)
{
	struct publish *p = calloc(1, sizeof(*p));
	uint64_t rng = 1234;
	pthread_t th;

	REQUIRE(p);
	p->pt = pw_pt_create(0, 0, true);
	REQUIRE(p->pt);
	for (size_t i = 0; i < PUB_PAGES; i += 8) {
		/* eight leaves of a random 1 GiB region: new dirs and leaves */
		uint64_t region = splitmix64(&rng) & (VA_END - 1) &
				  ~(DIR1_SPAN - 1);

		for (size_t k = 0; k < 8; k++)
			p->addrs[i + k] = region + k * LEAF_SPAN +
				(splitmix64(&rng) & (LEAF_SPAN - PG));
	}
	REQUIRE(pthread_create(&th, NULL, publish_reader, p) == 0);
	for (size_t i = 0; i < PUB_PAGES; i++) {
		CHECK_INT(set_valid(p->pt, p->addrs[i], PG, i & 1), 0);
		atomic_store_explicit(&p->published, i + 1,
				      memory_order_release);
	}
	REQUIRE(pthread_join(th, NULL) == 0);
	printf("publication: %" PRIu64 " checks, %" PRIu64 " early hits\n",
	       p->checks, p->early_hits);
	CHECK_U64(p->lost, 0);
	for (size_t i = 0; i < PUB_PAGES; i++)
		CHECK_LOOKUP(p->pt, p->addrs[i], PG, i & 1, true, 0);
	pw_pt_destroy(p->pt);
	free(p);
}

static void test_race_fault_invalidate(void)
{
	race_phase_fault_invalidate();
	race_phase_publication();
}

struct waiter {
	struct pw_pt *pt;
	atomic_bool started, returned, ended;
	bool saw_ended;
	uint64_t seq;
};

static void *waiter_main(void *arg)
{
	struct waiter *w = arg;

	atomic_store(&w->started, true);
	w->seq = pw_pt_read_begin(w->pt);
	w->saw_ended = atomic_load(&w->ended);
	atomic_store(&w->returned, true);
	return NULL;
}

/*
 * While an invalidation is in progress read_begin sleeps; it returns only
 * after the invalidation ended, with the new (even) sequence. The order is
 * checked by a flag set before ending the invalidation, not by timing: the
 * 50 ms pause only makes it likely that the waiter is really asleep.
 */
static void test_read_begin_waits(void)
{
	struct waiter w = { 0 };
	uint64_t s0, t0;
	pthread_t th;

	w.pt = pw_pt_create(UINT64_C(0x100000), 4 * PG, false);
	REQUIRE(w.pt);
	s0 = pw_pt_read_begin(w.pt);
	pw_pt_test_invalidate_begin(w.pt);
	pw_pt_lock(w.pt);
	CHECK(pw_pt_read_retry(w.pt, s0));
	pw_pt_unlock(w.pt);

	REQUIRE(pthread_create(&th, NULL, waiter_main, &w) == 0);
	t0 = unit_now_ns();
	while (!atomic_load(&w.started) &&
	       unit_now_ns() - t0 < 10ull * 1000000000ull)
		unit_sleep_ms(1);
	CHECK(atomic_load(&w.started));
	unit_sleep_ms(50);
	CHECK(!atomic_load(&w.returned));
	atomic_store(&w.ended, true);
	pw_pt_test_invalidate_end(w.pt);
	REQUIRE(pthread_join(th, NULL) == 0);

	CHECK(w.saw_ended);
	CHECK((w.seq & 1) == 0);
	CHECK(w.seq != s0);
	pw_pt_lock(w.pt);
	CHECK(!pw_pt_read_retry(w.pt, w.seq));
	CHECK(pw_pt_read_retry(w.pt, s0));
	pw_pt_unlock(w.pt);
	CHECK_U64(pw_pt_read_begin(w.pt), w.seq);
	CHECK_U64(pw_pt_invalidations(w.pt), 1);
	pw_pt_destroy(w.pt);
}

static const struct unit_test tests[] = {
	{ "create_bounds", test_create_bounds },
	{ "lookup_ranges", test_lookup_ranges },
	{ "implicit_sparse", test_implicit_sparse },
	{ "huge_explicit", test_huge_explicit },
	{ "seq_discipline", test_seq_discipline },
	{ "invalidate_clears", test_invalidate_clears },
	{ "accessed_clock", test_accessed_clock },
	{ "race_fault_invalidate", test_race_fault_invalidate },
	{ "read_begin_waits", test_read_begin_waits },
};

UNIT_MAIN(tests)
