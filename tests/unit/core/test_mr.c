/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of memory regions (src/mr/mr.c, pw_mr_covers in src/mr/mr.h)
 * and of the object lifetime rules of contexts and PDs (src/core).
 *
 * pw_mr_covers is the bounds check every remote access goes through, so its
 * edges (first/last byte, empty ranges, arithmetic overflow near 2^64, the
 * implicit MR) are tested exhaustively. Registration is tested through the
 * public API, and its side effects on the process (VmLck, VmRSS) are read
 * back from /proc/self/status: pinning must lock exactly the pages it
 * claims, ODP must touch nothing.
 */
#include <linux/capability.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/context.h"
#include "mr/mr.h"

#include "unit.h"

static size_t page;

/*
 * ASan replaces mlock/munlock with stubs that do nothing (its shadow memory
 * makes locking unworkable in general), which would make every pinning
 * assertion here fail in the sanitizer build for a reason that has nothing
 * to do with pagewire. Put the real system calls back in this executable, so
 * the library's own calls pin for real under ASan too. The sanitizer
 * runtime's interceptors are weak, so these definitions win.
 */
#if defined(__SANITIZE_ADDRESS__)
#define UNIT_REAL_MLOCK 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNIT_REAL_MLOCK 1
#endif
#endif
#ifdef UNIT_REAL_MLOCK
int mlock(const void *addr, size_t len)
{
	return (int)syscall(SYS_mlock, addr, len);
}

int munlock(const void *addr, size_t len)
{
	return (int)syscall(SYS_munlock, addr, len);
}
#endif

/* ---- pw_mr_covers ----------------------------------------------------- */

static struct pw_mr_i mr_range(uint64_t start, uint64_t end)
{
	struct pw_mr_i m;

	memset(&m, 0, sizeof(m));
	m.start = start;
	m.end = end;
	return m;
}

/* Bytes exactly at both ends; empty ranges; one byte either side. */
static void test_covers_bounds(void)
{
	struct pw_mr_i m = mr_range(0x1000, 0x2000);

	CHECK(pw_mr_covers(&m, 0x1000, 0x1000));	/* the whole MR */
	CHECK(pw_mr_covers(&m, 0x1000, 1));		/* first byte */
	CHECK(pw_mr_covers(&m, 0x1fff, 1));		/* last byte */
	CHECK(pw_mr_covers(&m, 0x1800, 0x800));		/* tail */
	CHECK(!pw_mr_covers(&m, 0x1000, 0x1001));	/* one past the end */
	CHECK(!pw_mr_covers(&m, 0x1fff, 2));
	CHECK(!pw_mr_covers(&m, 0xfff, 1));		/* one before */
	CHECK(!pw_mr_covers(&m, 0xfff, 0x1001));	/* straddles start */
	CHECK(!pw_mr_covers(&m, 0x2000, 1));		/* first byte after */
	CHECK(!pw_mr_covers(&m, 0, 0x1000));		/* ends at start */
	CHECK(!pw_mr_covers(&m, 0, 0x3000));		/* contains the MR */

	/* empty ranges: inside or at either end yes, outside no */
	CHECK(pw_mr_covers(&m, 0x1000, 0));
	CHECK(pw_mr_covers(&m, 0x1800, 0));
	CHECK(pw_mr_covers(&m, 0x2000, 0));
	CHECK(!pw_mr_covers(&m, 0xfff, 0));
	CHECK(!pw_mr_covers(&m, 0x2001, 0));
	CHECK(!pw_mr_covers(&m, 0, 0));
	CHECK(!pw_mr_covers(&m, UINT64_MAX, 0));
}

/* addr + len must never wrap into "inside". */
static void test_covers_overflow(void)
{
	struct pw_mr_i m = mr_range(0x1000, 0x2000);
	struct pw_mr_i top = mr_range(UINT64_MAX - 0x1000, UINT64_MAX);

	CHECK(!pw_mr_covers(&m, 0x1800, UINT64_MAX));
	/* 0x1800 + len wraps to exactly 0 */
	CHECK(!pw_mr_covers(&m, 0x1800, UINT64_MAX - 0x1800 + 1));
	/* wraps to 0x1000, which would look like "ends inside" */
	CHECK(!pw_mr_covers(&m, 0x1800, UINT64_MAX - 0x800 + 1));
	CHECK(!pw_mr_covers(&m, UINT64_MAX, 1));
	CHECK(!pw_mr_covers(&m, UINT64_MAX, UINT64_MAX));
	CHECK(!pw_mr_covers(&m, UINT64_MAX - 1, 0x1002));

	/* an MR that ends at the top of the address space */
	CHECK(pw_mr_covers(&top, UINT64_MAX - 0x1000, 0x1000));
	CHECK(pw_mr_covers(&top, UINT64_MAX - 1, 1));
	CHECK(pw_mr_covers(&top, UINT64_MAX, 0));
	CHECK(!pw_mr_covers(&top, UINT64_MAX - 0x1000, 0x1001));
	CHECK(!pw_mr_covers(&top, UINT64_MAX, 1));
	CHECK(!pw_mr_covers(&top, UINT64_MAX - 1, 2));
	CHECK(!pw_mr_covers(&top, UINT64_MAX - 1, UINT64_MAX));
	CHECK(!pw_mr_covers(&top, UINT64_MAX - 0x1001, 1));
}

/*
 * The implicit MR covers [0, UINT64_MAX): everything except a range whose
 * end does not fit in 64 bits.
 */
static void test_covers_implicit(void)
{
	struct pw_mr_i m = mr_range(0, UINT64_MAX);

	m.implicit = true;
	CHECK(pw_mr_covers(&m, 0, 0));
	CHECK(pw_mr_covers(&m, 0, 1));
	CHECK(pw_mr_covers(&m, 0, UINT64_MAX));
	CHECK(pw_mr_covers(&m, 0x7fff12345000ull, 1u << 20));
	CHECK(pw_mr_covers(&m, UINT64_MAX - 1, 1));
	CHECK(pw_mr_covers(&m, UINT64_MAX, 0));
	CHECK(!pw_mr_covers(&m, 1, UINT64_MAX));
	CHECK(!pw_mr_covers(&m, UINT64_MAX, 1));
	CHECK(!pw_mr_covers(&m, UINT64_MAX - 1, 2));
	CHECK(!pw_mr_covers(&m, 0x1000, UINT64_MAX - 0xfff));
	CHECK(pw_mr_covers(&m, 0x1000, UINT64_MAX - 0x1000));
}

/* ---- registration ------------------------------------------------------ */

struct env {
	struct pw_context *ctx;
	struct pw_pd *pd;
};

static bool env_open(struct env *e)
{
	e->ctx = pw_open(NULL);
	if (!e->ctx)
		return false;
	e->pd = pw_alloc_pd(e->ctx);
	return e->pd != NULL;
}

static void env_close(struct env *e)
{
	if (e->pd)
		CHECK_INT(pw_dealloc_pd(e->pd), 0);
	if (e->ctx)
		CHECK_INT(pw_close(e->ctx), 0);
}

static void *map_pages(size_t n, int prot)
{
	void *p = mmap(NULL, n * page, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static uint64_t vmlck(void)
{
	return unit_status_bytes("VmLck");
}

/*
 * Resident bytes of the mapping that contains @addr, from /proc/self/smaps,
 * or UINT64_MAX. Unlike VmRSS, which the kernel sums from per-CPU counters
 * and which other threads (the progress thread) move, this walks the page
 * table of exactly the range in question.
 */
static uint64_t vma_rss(const void *addr)
{
	char line[512];
	bool in = false;
	uint64_t val = UINT64_MAX;
	FILE *f = fopen("/proc/self/smaps", "re");

	if (!f)
		return UINT64_MAX;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long start, end, kb;

		if (sscanf(line, "%llx-%llx ", &start, &end) == 2) {
			/* containing, in case the VMA merged with a neighbour */
			in = start <= (uintptr_t)addr && (uintptr_t)addr < end;
			continue;
		}
		if (in && sscanf(line, "Rss: %llu kB", &kb) == 1) {
			val = (uint64_t)kb * 1024;
			break;
		}
	}
	fclose(f);
	return val;
}

/* Every malformed request is EINVAL, with a reason, and leaves nothing. */
/*
 * Dead ranges (the notifier's unmap): an access overlapping one by a
 * single byte is refused, the bytes either side are not; killing a range
 * inside a dead one is no news; a hundred ranges are each kept exactly
 * (the set grows).
 */
static void test_covers_dead(void)
{
	struct pw_mr_i m = mr_range(0x10000, 0x20000);

	CHECK(pw_mr_kill_range(&m, 0x14000, 0x15000));
	CHECK(!pw_mr_covers(&m, 0x14000, 1));
	CHECK(!pw_mr_covers(&m, 0x14fff, 1));
	CHECK(!pw_mr_covers(&m, 0x13fff, 2));		/* straddles its start */
	CHECK(!pw_mr_covers(&m, 0x10000, 0x10000));	/* the whole MR */
	CHECK(pw_mr_covers(&m, 0x13fff, 1));		/* byte before */
	CHECK(pw_mr_covers(&m, 0x15000, 1));		/* byte after */
	CHECK(pw_mr_covers(&m, 0x10000, 0x4000));	/* up to it */
	CHECK(!pw_mr_kill_range(&m, 0x14100, 0x14200));	/* already dead */
	CHECK(pw_mr_kill_range(&m, 0x1f000, 0x20000));
	CHECK(!pw_mr_covers(&m, 0x1ffff, 1));
	CHECK(pw_mr_covers(&m, 0x16000, 0x1000));
	/* many more ranges: the set grows, every one stays exact */
	for (uint64_t i = 0; i < 100; i++)
		CHECK(pw_mr_kill_range(&m, 0x10000 + i * 0x10, 0x10000 + i * 0x10 + 1));
	for (uint64_t i = 0; i < 100; i++) {
		CHECK(!pw_mr_covers(&m, 0x10000 + i * 0x10, 1));
		CHECK(pw_mr_covers(&m, 0x10001 + i * 0x10, 0xf));
	}
	CHECK(pw_mr_covers(&m, 0x16000, 0x1000));
	CHECK(!pw_mr_covers(&m, 0x14800, 1));
	pw_mr_free_dead(&m);
}

static void test_reg_flags_invalid(void)
{
	static const unsigned int bad_bits[] = {
		1u << 4, 1u << 5, 1u << 8, 1u << 16, 1u << 31,
	};
	struct env e = { 0 };
	char *buf = malloc(4096);
	const unsigned int lw = PW_ACCESS_LOCAL_WRITE;

	REQUIRE(buf && env_open(&e));

	CHECK_NULL_ERRNO(pw_reg_mr(e.pd, buf, 4096, PW_ACCESS_REMOTE_WRITE),
			 EINVAL);
	CHECK(pw_last_error()[0] != '\0');
	CHECK_NULL_ERRNO(pw_reg_mr(e.pd, buf, 4096,
				   PW_ACCESS_REMOTE_WRITE | PW_ACCESS_ON_DEMAND),
			 EINVAL);
	CHECK_NULL_ERRNO(pw_reg_mr(e.pd, buf, 4096, PW_ACCESS_REMOTE_ATOMIC),
			 EINVAL);
	CHECK_NULL_ERRNO(pw_reg_mr(e.pd, buf, 4096, PW_ACCESS_REMOTE_READ |
				   PW_ACCESS_REMOTE_ATOMIC | PW_ACCESS_ON_DEMAND),
			 EINVAL);
	for (size_t i = 0; i < sizeof(bad_bits) / sizeof(bad_bits[0]); i++) {
		CHECK_NULL_ERRNO(pw_reg_mr(e.pd, buf, 4096, bad_bits[i]), EINVAL);
		CHECK_NULL_ERRNO(pw_reg_mr(e.pd, buf, 4096, lw | bad_bits[i] |
					   PW_ACCESS_ON_DEMAND), EINVAL);
	}
	CHECK_NULL_ERRNO(pw_reg_mr(e.pd, buf, 0, lw), EINVAL);
	CHECK_NULL_ERRNO(pw_reg_mr(e.pd, buf, 0, lw | PW_ACCESS_ON_DEMAND), EINVAL);
	CHECK_NULL_ERRNO(pw_reg_mr(e.pd, NULL, 0, PW_ACCESS_ON_DEMAND), EINVAL);
	/* implicit (NULL, SIZE_MAX) is ODP only */
	CHECK_NULL_ERRNO(pw_reg_mr(e.pd, NULL, SIZE_MAX, lw), EINVAL);
	CHECK_NULL_ERRNO(pw_reg_mr(e.pd, NULL, SIZE_MAX, 0), EINVAL);
	CHECK(pw_last_error()[0] != '\0');
	/* a range that wraps past the top of the address space */
	CHECK_NULL_ERRNO(pw_reg_mr(e.pd, (void *)(uintptr_t)(UINT64_MAX - 4095),
				   8192, PW_ACCESS_ON_DEMAND), EINVAL);
	CHECK_NULL_ERRNO(pw_reg_mr(e.pd, buf, SIZE_MAX, PW_ACCESS_ON_DEMAND),
			 EINVAL);
	CHECK_NULL_ERRNO(pw_reg_mr(NULL, buf, 4096, lw), EINVAL);

	/* nothing was counted against the PD, nothing locked */
	CHECK_INT(atomic_load(&to_pd(e.pd)->users), 0);
	CHECK_INT(e.ctx->keys.used, 0);
	CHECK_INT(pw_dereg_mr(NULL), -EINVAL);
	env_close(&e);
	free(buf);
}

/* Valid combinations register, echo their attributes, and get fresh keys. */
static void test_reg_flags_valid(void)
{
	const unsigned int lw = PW_ACCESS_LOCAL_WRITE;
	const unsigned int combos[] = {
		0,
		lw,
		PW_ACCESS_REMOTE_READ,
		lw | PW_ACCESS_REMOTE_WRITE,
		lw | PW_ACCESS_REMOTE_ATOMIC,
		lw | PW_ACCESS_REMOTE_WRITE | PW_ACCESS_REMOTE_READ |
			PW_ACCESS_REMOTE_ATOMIC,
	};
	enum { NC = sizeof(combos) / sizeof(combos[0]) };
	struct pw_mr *mrs[2 * NC];
	struct env e = { 0 };
	char *buf = map_pages(4, PROT_READ | PROT_WRITE);
	uint64_t lck0;

	REQUIRE(buf && env_open(&e));
	lck0 = vmlck();
	for (size_t i = 0; i < 2 * NC; i++) {
		unsigned int acc = combos[i % NC] |
				   (i >= NC ? PW_ACCESS_ON_DEMAND : 0);
		struct pw_mr *mr = pw_reg_mr(e.pd, buf + 100, 3 * page, acc);

		mrs[i] = mr;
		if (!mr) {
			UNIT_FAIL("pw_reg_mr(access %#x): %s (%s)", acc,
				  strerror(errno), pw_last_error());
			continue;
		}
		CHECK_PTR(mr->addr, buf + 100);
		CHECK_INT(mr->length, 3 * page);
		CHECK_INT(mr->access, acc);
		CHECK_PTR(mr->pd, e.pd);
		CHECK_PTR(mr->context, e.ctx);
		CHECK(mr->lkey != 0);
		CHECK_U64(mr->rkey, mr->lkey);
		CHECK_U64(to_mr(mr)->start, (uintptr_t)(buf + 100));
		CHECK_U64(to_mr(mr)->end, (uintptr_t)(buf + 100 + 3 * page));
		CHECK_INT(to_mr(mr)->pinned, !(acc & PW_ACCESS_ON_DEMAND));
		CHECK(!to_mr(mr)->implicit);
		for (size_t j = 0; j < i; j++)
			if (mrs[j] && mrs[j]->lkey == mr->lkey)
				UNIT_FAIL("mr %zu and %zu share key %#x", i, j,
					  mr->lkey);
	}
	/* pinned: [buf+100, buf+100+3 pages) touches 4 pages */
	CHECK_U64(vmlck() - lck0, 4 * page);
	CHECK_INT(atomic_load(&to_pd(e.pd)->users), 2 * NC);
	for (size_t i = 0; i < 2 * NC; i++)
		if (mrs[i])
			CHECK_INT(pw_dereg_mr(mrs[i]), 0);
	CHECK_U64(vmlck(), lck0);
	CHECK_INT(atomic_load(&to_pd(e.pd)->users), 0);
	env_close(&e);
	munmap(buf, 4 * page);
}

/* NULL + SIZE_MAX + ON_DEMAND: one key for the whole address space. */
static void test_reg_implicit(void)
{
	struct env e = { 0 };
	struct pw_mr *mr;
	struct pw_mr_i *m;

	REQUIRE(env_open(&e));
	mr = pw_reg_mr(e.pd, NULL, SIZE_MAX,
		       PW_ACCESS_ON_DEMAND | PW_ACCESS_LOCAL_WRITE |
		       PW_ACCESS_REMOTE_WRITE | PW_ACCESS_REMOTE_READ);
	REQUIRE(mr);
	m = to_mr(mr);
	CHECK_PTR(mr->addr, NULL);
	CHECK_U64(mr->length, SIZE_MAX);
	CHECK(mr->lkey != 0);
	CHECK_U64(mr->rkey, mr->lkey);
	CHECK(m->implicit);
	CHECK(!m->pinned);
	CHECK_U64(m->start, 0);
	CHECK_U64(m->end, UINT64_MAX);
	CHECK(pw_mr_covers(m, (uintptr_t)&e, sizeof(e)));
	CHECK(pw_mr_covers(m, 0, UINT64_MAX));

	/* the key resolves to it like any other */
	{
		struct pw_mr_i *g = pw_mr_get(&e.ctx->keys, mr->rkey);

		CHECK_PTR(g, m);
		if (g)
			pw_mr_put(g);
	}
	CHECK_INT(pw_dereg_mr(mr), 0);
	env_close(&e);
}

/*
 * ODP registration of a huge range touches no page: nothing of it becomes
 * resident, nothing is locked. Both a PROT_NONE reservation (nothing
 * accessible behind it) and a read-write MAP_NORESERVE mapping that was
 * never touched.
 */
static void test_reg_odp_huge(void)
{
	static const int prots[] = { PROT_NONE, PROT_READ | PROT_WRITE };
	struct env e = { 0 };

	REQUIRE(env_open(&e));
	for (size_t i = 0; i < 2; i++) {
		size_t len = (size_t)1 << 40;	/* 1 TiB */
		void *p = MAP_FAILED;
		struct pw_mr *mr;
		uint64_t lck0, t0, t1;

		/* 47-bit user space fits 1 TiB; shrink if the VM refuses */
		for (; len >= ((size_t)1 << 34); len >>= 1) {
			p = mmap(NULL, len, prots[i], MAP_PRIVATE | MAP_ANONYMOUS |
				 MAP_NORESERVE, -1, 0);
			if (p != MAP_FAILED)
				break;
		}
		REQUIRE(p != MAP_FAILED);
		CHECK_U64(vma_rss(p), 0);
		lck0 = vmlck();
		t0 = unit_now_ns();
		mr = pw_reg_mr(e.pd, p, len, PW_ACCESS_ON_DEMAND |
			       PW_ACCESS_LOCAL_WRITE | PW_ACCESS_REMOTE_WRITE |
			       PW_ACCESS_REMOTE_READ);
		t1 = unit_now_ns();
		if (!mr)
			UNIT_FAIL("ODP registration of %zu GiB (prot %d): %s (%s)",
				  len >> 30, prots[i], strerror(errno),
				  pw_last_error());
		else
			printf("ODP %zu GiB prot %d: registered in %.1f us\n",
			       len >> 30, prots[i], (double)(t1 - t0) / 1e3);
		/* populating even a sliver would show here; it must be 0 */
		CHECK_U64(vma_rss(p), 0);
		CHECK_U64(vmlck(), lck0);
		if (mr) {
			CHECK(!to_mr(mr)->pinned);
			CHECK_INT(mr->length, len);
			CHECK_INT(pw_dereg_mr(mr), 0);
		}
		CHECK_U64(vma_rss(p), 0);
		munmap(p, len);
	}
	env_close(&e);
}

/*
 * True when no page of [p, p + len) is mapped: msync fails with ENOMEM on an
 * unmapped page, so each page is asked on its own.
 */
static bool range_unmapped(const char *p, size_t len)
{
	for (size_t off = 0; off < len; off += page)
		if (msync((void *)(p + off), page, MS_ASYNC) == 0 ||
		    errno != ENOMEM)
			return false;
	return true;
}

/* Pinning a range with nothing mapped fails with EFAULT, locking nothing. */
static void test_reg_pinned_unmapped(void)
{
	struct env e = { 0 };
	struct pw_mr *whole = NULL, *byte = NULL;
	int err_whole = 0, err_byte = 0;
	char last_error[2] = "";
	uint64_t lck0 = 0;
	char *p = NULL;
	int attempt;

	REQUIRE(env_open(&e));
	/*
	 * A freed hole is the first place the kernel hands out again, and other
	 * threads of this process (the progress thread's allocator, a
	 * sanitizer's) may map into it between our munmap and pw_reg_mr. Such a
	 * run tests nothing, so it is noticed (the hole is no longer empty
	 * after the calls) and taken again with a fresh hole.
	 */
	for (attempt = 0; attempt < 8; attempt++) {
		p = map_pages(4, PROT_READ | PROT_WRITE);
		REQUIRE(p && munmap(p, 4 * page) == 0);
		lck0 = vmlck();
		errno = 0;
		whole = pw_reg_mr(e.pd, p, 4 * page, PW_ACCESS_LOCAL_WRITE);
		err_whole = errno;
		last_error[0] = pw_last_error()[0];
		errno = 0;
		byte = pw_reg_mr(e.pd, p + 10, 1, 0);
		err_byte = errno;
		if (range_unmapped(p, 4 * page))
			break;
		printf("hole at %p was mapped meanwhile; again\n", (void *)p);
		if (whole)
			CHECK_INT(pw_dereg_mr(whole), 0);
		if (byte)
			CHECK_INT(pw_dereg_mr(byte), 0);
		whole = byte = NULL;
	}
	REQUIRE(attempt < 8);
	CHECK(whole == NULL);
	CHECK_INT(err_whole, EFAULT);
	CHECK(last_error[0] != '\0');
	CHECK(byte == NULL);
	CHECK_INT(err_byte, EFAULT);
	CHECK_U64(vmlck(), lck0);
	CHECK_INT(atomic_load(&to_pd(e.pd)->users), 0);
	CHECK_INT(e.ctx->keys.used, 0);
	if (whole)
		CHECK_INT(pw_dereg_mr(whole), 0);
	if (byte)
		CHECK_INT(pw_dereg_mr(byte), 0);
	/* the same range registers fine on demand: ODP touches nothing */
	{
		struct pw_mr *mr = pw_reg_mr(e.pd, p, 4 * page, PW_ACCESS_ON_DEMAND);

		CHECK(mr != NULL);
		if (mr)
			CHECK_INT(pw_dereg_mr(mr), 0);
	}
	env_close(&e);
}

/*
 * A pinned range with a hole after mapped pages: EFAULT, and the pages
 * before the hole must not stay locked (mlock locks VMA by VMA and stops at
 * the hole, so a failed registration must undo the part it locked).
 */
static void test_reg_pinned_hole(void)
{
	struct env e = { 0 };
	char *p = map_pages(4, PROT_READ | PROT_WRITE);
	uint64_t lck0;

	REQUIRE(p && env_open(&e));
	REQUIRE(munmap(p + 2 * page, page) == 0);	/* hole at page 2 */
	lck0 = vmlck();
	CHECK_NULL_ERRNO(pw_reg_mr(e.pd, p, 4 * page, PW_ACCESS_LOCAL_WRITE),
			 EFAULT);
	CHECK_U64(vmlck(), lck0);
	CHECK_INT(atomic_load(&to_pd(e.pd)->users), 0);
	env_close(&e);
	munlock(p, 2 * page);	/* whatever the library left behind */
	munmap(p, 2 * page);
	munmap(p + 3 * page, page);
}

/*
 * mlock is not reference counted: deregistering one of two overlapping
 * pinned MRs must keep the pages the other covers locked, and the last
 * deregistration must unlock everything.
 */
static void test_reg_pinned_overlap(void)
{
	struct env e = { 0 };
	char *p = map_pages(12, PROT_READ | PROT_WRITE);
	const unsigned int lw = PW_ACCESS_LOCAL_WRITE;
	struct pw_mr *a, *b, *c, *d, *f;
	uint64_t l0;

	REQUIRE(p && env_open(&e));
	l0 = vmlck();

	/* A = pages 0..5, B = pages 2..7: 8 pages locked */
	a = pw_reg_mr(e.pd, p, 6 * page, lw);
	b = pw_reg_mr(e.pd, p + 2 * page, 6 * page, lw);
	REQUIRE(a && b);
	CHECK_U64(vmlck() - l0, 8 * page);
	CHECK_INT(pw_dereg_mr(a), 0);
	CHECK_U64(vmlck() - l0, 6 * page);		/* B's pages 2..7 */
	CHECK_INT(pw_dereg_mr(b), 0);
	CHECK_U64(vmlck(), l0);

	/*
	 * Unaligned MRs sharing one page: C ends in page 1 and D starts in
	 * it. Page 1 stays locked while either remains.
	 */
	c = pw_reg_mr(e.pd, p + 100, page, lw);		/* pages 0..1 */
	d = pw_reg_mr(e.pd, p + page + 200, page, lw);	/* pages 1..2 */
	REQUIRE(c && d);
	CHECK_U64(vmlck() - l0, 3 * page);
	CHECK_INT(pw_dereg_mr(c), 0);
	CHECK_U64(vmlck() - l0, 2 * page);
	CHECK_INT(pw_dereg_mr(d), 0);
	CHECK_U64(vmlck(), l0);

	/*
	 * A big MR with two small ones inside it, at both ends and apart:
	 * dropping the big one leaves exactly the small ones' pages locked.
	 */
	a = pw_reg_mr(e.pd, p, 12 * page, lw);
	b = pw_reg_mr(e.pd, p + page, 2 * page, lw);		/* 1..2 */
	f = pw_reg_mr(e.pd, p + 11 * page, page, lw);		/* 11 */
	c = pw_reg_mr(e.pd, p + 6 * page, page, lw);		/* 6 */
	REQUIRE(a && b && f && c);
	CHECK_U64(vmlck() - l0, 12 * page);
	CHECK_INT(pw_dereg_mr(a), 0);
	CHECK_U64(vmlck() - l0, 4 * page);
	CHECK_INT(pw_dereg_mr(c), 0);
	CHECK_U64(vmlck() - l0, 3 * page);
	CHECK_INT(pw_dereg_mr(b), 0);
	CHECK_INT(pw_dereg_mr(f), 0);
	CHECK_U64(vmlck(), l0);

	/* an identical duplicate keeps everything locked */
	a = pw_reg_mr(e.pd, p, 4 * page, lw);
	b = pw_reg_mr(e.pd, p, 4 * page, lw);
	REQUIRE(a && b);
	CHECK_INT(pw_dereg_mr(b), 0);
	CHECK_U64(vmlck() - l0, 4 * page);
	CHECK_INT(pw_dereg_mr(a), 0);
	CHECK_U64(vmlck(), l0);

	/* an ODP MR over a pinned one neither locks nor unlocks */
	a = pw_reg_mr(e.pd, p, 4 * page, lw);
	b = pw_reg_mr(e.pd, p, 12 * page, lw | PW_ACCESS_ON_DEMAND);
	REQUIRE(a && b);
	CHECK_U64(vmlck() - l0, 4 * page);
	CHECK_INT(pw_dereg_mr(b), 0);
	CHECK_U64(vmlck() - l0, 4 * page);
	CHECK_INT(pw_dereg_mr(a), 0);
	CHECK_U64(vmlck(), l0);

	env_close(&e);
	munmap(p, 12 * page);
}

/* Drop CAP_IPC_LOCK from the effective set so RLIMIT_MEMLOCK applies. */
static int drop_ipc_lock(void)
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct data[2];

	memset(data, 0, sizeof(data));
	if (syscall(SYS_capget, &hdr, data) != 0)
		return -errno;
	data[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
	if (syscall(SYS_capset, &hdr, data) != 0)
		return -errno;
	return 0;
}

/*
 * Without CAP_IPC_LOCK, a pinned registration past RLIMIT_MEMLOCK fails
 * with ENOMEM and an error naming the limit, and locks nothing.
 */
static void test_reg_memlock_limit(void)
{
	struct env e = { 0 };
	char *p = map_pages(32, PROT_READ | PROT_WRITE);
	struct rlimit rl;
	struct pw_mr *a, *b;
	uint64_t l0;

	REQUIRE(p);
	REQUIRE(drop_ipc_lock() == 0);
	REQUIRE(getrlimit(RLIMIT_MEMLOCK, &rl) == 0);
	l0 = vmlck();
	REQUIRE(l0 == 0);
	/* 16 pages allowed; lowering the soft limit needs no privilege */
	rl.rlim_cur = 16 * page;
	REQUIRE(setrlimit(RLIMIT_MEMLOCK, &rl) == 0);
	REQUIRE(env_open(&e));

	a = pw_reg_mr(e.pd, p, 8 * page, PW_ACCESS_LOCAL_WRITE);
	CHECK(a != NULL);
	CHECK_U64(vmlck(), 8 * page);
	/* 8 more fit exactly */
	b = pw_reg_mr(e.pd, p + 8 * page, 8 * page, PW_ACCESS_LOCAL_WRITE);
	CHECK(b != NULL);
	CHECK_U64(vmlck(), 16 * page);
	if (b)
		CHECK_INT(pw_dereg_mr(b), 0);
	/* 9 do not */
	CHECK_NULL_ERRNO(pw_reg_mr(e.pd, p + 8 * page, 9 * page,
				   PW_ACCESS_LOCAL_WRITE), ENOMEM);
	CHECK(strstr(pw_last_error(), "RLIMIT_MEMLOCK") != NULL);
	CHECK_U64(vmlck(), 8 * page);
	/* ODP is not bounded by the limit */
	b = pw_reg_mr(e.pd, p, 32 * page, PW_ACCESS_ON_DEMAND);
	CHECK(b != NULL);
	CHECK_U64(vmlck(), 8 * page);
	if (b)
		CHECK_INT(pw_dereg_mr(b), 0);
	if (a)
		CHECK_INT(pw_dereg_mr(a), 0);
	CHECK_U64(vmlck(), 0);
	CHECK_INT(atomic_load(&to_pd(e.pd)->users), 0);
	env_close(&e);
	munmap(p, 32 * page);
}

/*
 * The limit is on memory locked, not on bytes registered: an MR over pages
 * that are already pinned locks nothing new and must not be refused (the
 * kernel's own mlock check discounts already-locked pages, and registering
 * one buffer twice with different rights is common).
 */
static void test_reg_memlock_overlap(void)
{
	struct env e = { 0 };
	char *p = map_pages(16, PROT_READ | PROT_WRITE);
	struct rlimit rl;
	struct pw_mr *a, *b = NULL;

	REQUIRE(p);
	REQUIRE(drop_ipc_lock() == 0);
	REQUIRE(getrlimit(RLIMIT_MEMLOCK, &rl) == 0);
	REQUIRE(vmlck() == 0);
	rl.rlim_cur = 16 * page;
	REQUIRE(setrlimit(RLIMIT_MEMLOCK, &rl) == 0);
	REQUIRE(env_open(&e));

	a = pw_reg_mr(e.pd, p, 10 * page, PW_ACCESS_LOCAL_WRITE);
	REQUIRE(a);
	CHECK_U64(vmlck(), 10 * page);
	/* the kernel agrees: re-locking locked pages is within the limit */
	CHECK_INT(mlock(p, 10 * page), 0);
	CHECK_U64(vmlck(), 10 * page);

	b = pw_reg_mr(e.pd, p, 10 * page, PW_ACCESS_LOCAL_WRITE |
		      PW_ACCESS_REMOTE_READ);
	if (!b)
		UNIT_FAIL("second pinned MR over the same 10 locked pages "
			  "(limit 16): errno %d, \"%s\"", errno, pw_last_error());
	CHECK_U64(vmlck(), 10 * page);
	/* 6 new pages plus 4 already locked: exactly at the limit */
	if (b)
		CHECK_INT(pw_dereg_mr(b), 0);
	b = pw_reg_mr(e.pd, p + 6 * page, 10 * page, PW_ACCESS_LOCAL_WRITE);
	if (!b)
		UNIT_FAIL("pinned MR adding 6 pages to 10 locked (limit 16): "
			  "errno %d, \"%s\"", errno, pw_last_error());
	CHECK_U64(vmlck(), 16 * page);
	if (b)
		CHECK_INT(pw_dereg_mr(b), 0);
	CHECK_U64(vmlck(), 10 * page);
	CHECK_INT(pw_dereg_mr(a), 0);
	CHECK_U64(vmlck(), 0);
	env_close(&e);
	munmap(p, 16 * page);
}

/* ---- object lifetime --------------------------------------------------- */

/* A PD with MRs cannot go; it can once they are deregistered. */
static void test_dealloc_pd_busy(void)
{
	struct pw_context *ctx = pw_open(NULL);
	struct pw_pd *pd, *pd2;
	struct pw_mr *odp, *pin;
	char *buf = map_pages(1, PROT_READ | PROT_WRITE);

	REQUIRE(ctx && buf);
	pd = pw_alloc_pd(ctx);
	pd2 = pw_alloc_pd(ctx);
	REQUIRE(pd && pd2);
	CHECK(pd != pd2);
	odp = pw_reg_mr(pd, buf, page, PW_ACCESS_ON_DEMAND);
	pin = pw_reg_mr(pd, buf, page, PW_ACCESS_LOCAL_WRITE);
	REQUIRE(odp && pin);
	CHECK_INT(pw_dealloc_pd(pd), -EBUSY);
	CHECK(pw_last_error()[0] != '\0');
	CHECK_INT(pw_dereg_mr(odp), 0);
	CHECK_INT(pw_dealloc_pd(pd), -EBUSY);	/* the pinned one remains */
	/* the PD still works after a refused dealloc */
	odp = pw_reg_mr(pd, buf, page, PW_ACCESS_ON_DEMAND);
	CHECK(odp != NULL);
	if (odp)
		CHECK_INT(pw_dereg_mr(odp), 0);
	CHECK_INT(pw_dereg_mr(pin), 0);
	CHECK_INT(pw_dealloc_pd(pd), 0);
	CHECK_INT(pw_dealloc_pd(pd2), 0);	/* an empty PD goes at once */
	CHECK_INT(pw_dealloc_pd(NULL), -EINVAL);
	CHECK_NULL_ERRNO(pw_alloc_pd(NULL), EINVAL);
	CHECK_INT(pw_close(ctx), 0);
	munmap(buf, page);
}

/* pw_close refuses while any PD, CQ, channel or listener is open. */
static void test_close_busy(void)
{
	struct pw_context *ctx = pw_open(NULL);
	struct pw_context_attr bad = { .flags = 1u << 3 };	/* unknown flag */
	struct pw_context_attr badpol = { .fault_policy = PW_FAULT_NOTIFY + 1 };
	struct pw_pd *pd;
	struct pw_cq *cq;
	struct pw_comp_channel *ch;
	struct pw_listener *l;

	REQUIRE(ctx);
	CHECK_INT(pw_close(NULL), -EINVAL);
	CHECK_NULL_ERRNO(pw_open(&bad), EINVAL);
	CHECK_NULL_ERRNO(pw_open(&badpol), EINVAL);

	pd = pw_alloc_pd(ctx);
	REQUIRE(pd);
	CHECK_INT(pw_close(ctx), -EBUSY);
	CHECK(pw_last_error()[0] != '\0');
	CHECK_INT(pw_dealloc_pd(pd), 0);

	cq = pw_create_cq(ctx, 4, NULL, NULL, 0);
	REQUIRE(cq);
	CHECK_INT(pw_close(ctx), -EBUSY);
	CHECK_INT(pw_destroy_cq(cq), 0);

	ch = pw_create_comp_channel(ctx);
	REQUIRE(ch);
	CHECK_INT(pw_close(ctx), -EBUSY);
	CHECK_INT(pw_destroy_comp_channel(ch), 0);

	l = pw_listen(ctx, "127.0.0.1", 0);
	REQUIRE(l);
	CHECK(pw_listener_port(l) != 0);
	CHECK_INT(pw_close(ctx), -EBUSY);
	CHECK_INT(pw_close_listener(l), 0);

	/* a refused close leaves a working context */
	pd = pw_alloc_pd(ctx);
	CHECK(pd != NULL);
	if (pd)
		CHECK_INT(pw_dealloc_pd(pd), 0);
	CHECK_INT(pw_close(ctx), 0);
}

static const struct unit_test tests[] = {
	{ "covers_bounds", test_covers_bounds },
	{ "covers_overflow", test_covers_overflow },
	{ "covers_implicit", test_covers_implicit },
	{ "covers_dead", test_covers_dead },
	{ "reg_flags_invalid", test_reg_flags_invalid },
	{ "reg_flags_valid", test_reg_flags_valid },
	{ "reg_implicit", test_reg_implicit },
	{ "reg_odp_huge", test_reg_odp_huge },
	{ "reg_pinned_unmapped", test_reg_pinned_unmapped },
	{ "reg_pinned_hole", test_reg_pinned_hole },
	{ "reg_pinned_overlap", test_reg_pinned_overlap },
	{ "reg_memlock_limit", test_reg_memlock_limit },
	{ "reg_memlock_overlap", test_reg_memlock_overlap },
	{ "dealloc_pd_busy", test_dealloc_pd_busy },
	{ "close_busy", test_close_busy },
};

int main(int argc, char **argv)
{
	page = (size_t)sysconf(_SC_PAGESIZE);
	return unit_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
