/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the shared helpers (src/util/util.c).
 *
 * The EFAULT-safe copies are what lets the engine survive an application
 * that munmaps or write-protects memory under a remote operation: they must
 * report a negative errno, never raise SIGSEGV, and copy exactly the bytes
 * they claim. A SIGSEGV handler turns a crash into a clear failure message.
 */
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <pagewire/pagewire.h>

#include "util/util.h"

#include "unit.h"

static size_t page;

static void on_segv(int sig)
{
	static const char msg[] = "SIGSEGV: a safe copy touched memory directly\n";

	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0) {
		/* nothing more to do on the way out */
	}
	_exit(3);
}

/* A page that is certainly unmapped: map it, then unmap it. */
static void *dead_page(void)
{
	void *p = mmap(NULL, page, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	munmap(p, page);
	return p;
}

static void fill(unsigned char *p, size_t n, unsigned int seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(i * 31 + seed);
}

/* An unmapped source or destination is -EFAULT; the other side untouched. */
static void test_safe_unmapped(void)
{
	unsigned char buf[64], copy[64];
	void *dead = dead_page();

	REQUIRE(dead);
	fill(buf, sizeof(buf), 1);
	memcpy(copy, buf, sizeof(buf));
	CHECK_INT(pw_safe_write(dead, buf, 16), -EFAULT);
	CHECK_INT(pw_safe_write(dead, buf, 1), -EFAULT);
	CHECK_INT(pw_safe_read(buf, dead, 16), -EFAULT);
	CHECK_INT(pw_safe_read(buf, (char *)dead + page - 1, 1), -EFAULT);
	CHECK(memcmp(buf, copy, sizeof(buf)) == 0);
	/* NULL is just another unmapped address */
	CHECK_INT(pw_safe_write(NULL, buf, 8), -EFAULT);
	CHECK_INT(pw_safe_read(buf, NULL, 8), -EFAULT);
	{
		struct iovec iov = { .iov_base = dead, .iov_len = 16 };

		CHECK_INT(pw_safe_writev(&iov, 1, buf, 16), -EFAULT);
	}
}

/* A read-only page can be read from but not written to. */
static void test_safe_readonly(void)
{
	unsigned char *p = mmap(NULL, page, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned char src[32], dst[32];

	REQUIRE(p != MAP_FAILED);
	fill(p, page, 7);
	REQUIRE(mprotect(p, page, PROT_READ) == 0);
	fill(src, sizeof(src), 99);
	CHECK_INT(pw_safe_write(p + 100, src, sizeof(src)), -EFAULT);
	CHECK_INT(pw_safe_read(dst, p + 100, sizeof(dst)), (ssize_t)sizeof(dst));
	CHECK(memcmp(dst, p + 100, sizeof(dst)) == 0);	/* unchanged */
	/* PROT_NONE: neither way */
	REQUIRE(mprotect(p, page, PROT_NONE) == 0);
	CHECK_INT(pw_safe_read(dst, p, 8), -EFAULT);
	CHECK_INT(pw_safe_write(p, src, 8), -EFAULT);
	munmap(p, page);
}

/* Ordinary copies of assorted sizes and alignments are exact. */
static void test_safe_copy(void)
{
	static const size_t sizes[] = { 1, 7, 64, 4095, 4096, 4097, 65536 + 3,
					 1 << 20 };
	size_t max = 1 << 20;
	unsigned char *src = malloc(max + 16), *dst = malloc(max + 16);
	unsigned char *back = malloc(max + 16);

	REQUIRE(src && dst && back);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t n = sizes[i];
		size_t off = i % 8;	/* unaligned on purpose */

		fill(src, n + off, (unsigned int)i);
		memset(dst, 0xee, max + 16);
		memset(back, 0xdd, max + 16);
		CHECK_INT(pw_safe_write(dst + off, src + off, n), (ssize_t)n);
		CHECK(memcmp(dst + off, src + off, n) == 0);
		/* neighbours untouched */
		if (off)
			CHECK_INT(dst[off - 1], 0xee);
		CHECK_INT(dst[off + n], 0xee);
		CHECK_INT(pw_safe_read(back + off, dst + off, n), (ssize_t)n);
		CHECK(memcmp(back + off, src + off, n) == 0);
		CHECK_INT(back[off + n], 0xdd);
	}
	CHECK_INT(pw_safe_write(dst, src, 0), 0);
	CHECK_INT(pw_safe_read(dst, src, 0), 0);
	free(back);
	free(dst);
	free(src);
}

/* One source scattered over several destination iovecs, in order. */
static void test_safe_writev(void)
{
	unsigned char src[300], a[10], b[1], c[200], d[89];
	unsigned char *parts[] = { a, b, c, d };
	struct iovec iov[] = {
		{ .iov_base = a, .iov_len = sizeof(a) },
		{ .iov_base = NULL, .iov_len = 0 },	/* empty: skipped */
		{ .iov_base = b, .iov_len = sizeof(b) },
		{ .iov_base = c, .iov_len = sizeof(c) },
		{ .iov_base = d, .iov_len = sizeof(d) },
	};
	size_t lens[] = { sizeof(a), sizeof(b), sizeof(c), sizeof(d) };
	size_t off = 0;

	fill(src, sizeof(src), 5);
	CHECK_INT(pw_safe_writev(iov, 5, src, sizeof(src)), (ssize_t)sizeof(src));
	for (int i = 0; i < 4; i++) {
		CHECK(memcmp(parts[i], src + off, lens[i]) == 0);
		off += lens[i];
	}
	/* a source shorter than the iovecs fills a prefix of them */
	memset(c, 0, sizeof(c));
	memset(d, 0, sizeof(d));
	fill(src, sizeof(src), 9);
	CHECK_INT(pw_safe_writev(iov, 5, src, 20), 20);
	CHECK(memcmp(a, src, 10) == 0);
	CHECK_INT(b[0], src[10]);
	CHECK(memcmp(c, src + 11, 9) == 0);
	CHECK_INT(c[9], 0);
	CHECK_INT(d[0], 0);
	CHECK_INT(pw_safe_writev(iov, 5, src, 0), 0);
}

/*
 * A fault part-way gives a short count: the bytes before the fault are
 * written and reported, nothing after it.
 */
static void test_safe_partial(void)
{
	unsigned char *p = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned char src[256], good[64];
	struct iovec iov[2];

	REQUIRE(p != MAP_FAILED);
	REQUIRE(munmap(p + page, page) == 0);
	fill(src, sizeof(src), 3);

	/* second iovec unmapped: the first is complete */
	memset(good, 0, sizeof(good));
	iov[0] = (struct iovec){ .iov_base = good, .iov_len = sizeof(good) };
	iov[1] = (struct iovec){ .iov_base = p + page, .iov_len = 64 };
	CHECK_INT(pw_safe_writev(iov, 2, src, 128), 64);
	CHECK(memcmp(good, src, sizeof(good)) == 0);

	/* one destination running off the end of the mapping */
	memset(p, 0, page);
	CHECK_INT(pw_safe_write(p + page - 100, src, 200), 100);
	CHECK(memcmp(p + page - 100, src, 100) == 0);

	/* and a source doing the same */
	{
		unsigned char dst[200];

		memset(dst, 0, sizeof(dst));
		CHECK_INT(pw_safe_read(dst, p + page - 100, 200), 100);
		CHECK(memcmp(dst, p + page - 100, 100) == 0);
		CHECK_INT(dst[100], 0);
	}
	munmap(p, page);
}

static void *other_thread(void *arg)
{
	char *out = arg;

	/* a fresh thread starts with no error */
	strcpy(out, pw_last_error());
	pw_set_error("thread %d failed", 2);
	strcat(out, "|");
	strcat(out, pw_last_error());
	return NULL;
}

/* The error text is per thread, formatted, truncated safely, clearable. */
static void test_last_error(void)
{
	char seen[600] = "";
	char longfmt[1000];
	pthread_t th;

	pw_clear_error();
	CHECK(strcmp(pw_last_error(), "") == 0);
	pw_set_error("limit %s is %d", "RLIMIT_MEMLOCK", 64);
	CHECK(strcmp(pw_last_error(), "limit RLIMIT_MEMLOCK is 64") == 0);
	REQUIRE(pthread_create(&th, NULL, other_thread, seen) == 0);
	REQUIRE(pthread_join(th, NULL) == 0);
	CHECK(strcmp(seen, "|thread 2 failed") == 0);
	CHECK(strcmp(pw_last_error(), "limit RLIMIT_MEMLOCK is 64") == 0);

	memset(longfmt, 'x', sizeof(longfmt) - 1);
	longfmt[sizeof(longfmt) - 1] = '\0';
	pw_set_error("%s", longfmt);
	CHECK(strlen(pw_last_error()) > 0);
	CHECK(strlen(pw_last_error()) < sizeof(longfmt) - 1);
	CHECK(strspn(pw_last_error(), "x") == strlen(pw_last_error()));
	pw_clear_error();
	CHECK(strcmp(pw_last_error(), "") == 0);
}

static const struct unit_test tests[] = {
	{ "safe_unmapped", test_safe_unmapped },
	{ "safe_readonly", test_safe_readonly },
	{ "safe_copy", test_safe_copy },
	{ "safe_writev", test_safe_writev },
	{ "safe_partial", test_safe_partial },
	{ "last_error", test_last_error },
};

int main(int argc, char **argv)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_segv;
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	/*
	 * As pw_open() does: arm the fault guard (it chains to on_segv for
	 * faults outside a guarded copy). PW_SAFE_COPY=syscall tests the other
	 * mechanism (registered as unit.util.*.syscall).
	 */
	pw_safe_copy_init();
	page = (size_t)sysconf(_SC_PAGESIZE);
	return unit_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
