/* SPDX-License-Identifier: MIT */
/*
 * Minimal harness for the core unit tests: one executable per module, one
 * sub-test per argv[1], so that CTest reports every case on its own and a
 * crash in one case does not hide the others.
 *
 * Checks print the expression and both values and keep going, so one run
 * shows every wrong outcome of a case; REQUIRE stops the case when going on
 * would only produce noise (or touch a NULL object).
 */
#ifndef PW_UNIT_CORE_UNIT_H
#define PW_UNIT_CORE_UNIT_H

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Each test executable is a single translation unit, so static is enough. */
static int unit_failures;

#define UNIT_FAIL(...)							\
	do {								\
		fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);		\
		fprintf(stderr, __VA_ARGS__);				\
		fputc('\n', stderr);					\
		unit_failures++;					\
	} while (0)

#define CHECK(cond)							\
	do {								\
		if (!(cond))						\
			UNIT_FAIL("CHECK failed: %s", #cond);		\
	} while (0)

#define CHECK_INT(expr, want)						\
	do {								\
		long long got_ = (long long)(expr);			\
		long long want_ = (long long)(want);			\
		if (got_ != want_)					\
			UNIT_FAIL("%s = %lld, want %lld", #expr, got_,	\
				  want_);				\
	} while (0)

#define CHECK_U64(expr, want)						\
	do {								\
		unsigned long long got_ = (unsigned long long)(expr);	\
		unsigned long long want_ = (unsigned long long)(want);	\
		if (got_ != want_)					\
			UNIT_FAIL("%s = %#llx, want %#llx", #expr, got_,	\
				  want_);				\
	} while (0)

#define CHECK_PTR(expr, want)						\
	do {								\
		const void *got_ = (const void *)(expr);		\
		const void *want_ = (const void *)(want);		\
		if (got_ != want_)					\
			UNIT_FAIL("%s = %p, want %p", #expr, got_, want_); \
	} while (0)

/* A constructor that must fail: NULL and exactly this errno. */
#define CHECK_NULL_ERRNO(expr, want_errno)				\
	do {								\
		const void *got_;					\
		errno = 0;						\
		got_ = (const void *)(expr);				\
		if (got_ != NULL)					\
			UNIT_FAIL("%s = %p, want NULL (errno %s)", #expr, \
				  got_, strerror(want_errno));		\
		else if (errno != (want_errno))				\
			UNIT_FAIL("%s: errno %d (%s), want %d (%s)",	\
				  #expr, errno, strerror(errno),	\
				  (want_errno), strerror(want_errno));	\
	} while (0)

#define REQUIRE(cond)							\
	do {								\
		if (!(cond)) {						\
			UNIT_FAIL("REQUIRE failed: %s (errno %d: %s)",	\
				  #cond, errno, strerror(errno));	\
			return;						\
		}							\
	} while (0)

struct unit_test {
	const char *name;
	void (*fn)(void);
};

static inline uint64_t unit_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void unit_sleep_ms(unsigned int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000,
			       .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/*
 * A "Name:  value kB" field of /proc/self/status in bytes (VmLck, VmRSS),
 * or UINT64_MAX if it cannot be read, which no assertion will accept.
 */
static inline uint64_t unit_status_bytes(const char *field)
{
	char line[256];
	size_t flen = strlen(field);
	uint64_t val = UINT64_MAX;
	FILE *f = fopen("/proc/self/status", "re");

	if (!f)
		return UINT64_MAX;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long kb;

		if (strncmp(line, field, flen) == 0 && line[flen] == ':' &&
		    sscanf(line + flen + 1, " %llu kB", &kb) == 1) {
			val = (uint64_t)kb * 1024;
			break;
		}
	}
	fclose(f);
	return val;
}

/* Run the sub-test named by argv[1] ("all" runs every one, for hand use). */
static inline int unit_main(int argc, char **argv,
			    const struct unit_test *tests, size_t ntests)
{
	int ran = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s TEST|all\ntests:", argv[0]);
		for (size_t i = 0; i < ntests; i++)
			fprintf(stderr, " %s", tests[i].name);
		fputc('\n', stderr);
		return 2;
	}
	for (size_t i = 0; i < ntests; i++) {
		int before = unit_failures;

		if (strcmp(argv[1], "all") != 0 &&
		    strcmp(argv[1], tests[i].name) != 0)
			continue;
		tests[i].fn();
		ran++;
		printf("%s: %s\n", tests[i].name,
		       unit_failures > before ? "FAIL" : "ok");
		fflush(stdout);
	}
	if (!ran) {
		/* a typo in CMakeLists.txt must not pass silently */
		fprintf(stderr, "unknown test '%s'\n", argv[1]);
		return 2;
	}
	return unit_failures ? 1 : 0;
}

#define UNIT_MAIN(tests)						\
	int main(int argc, char **argv)					\
	{								\
		return unit_main(argc, argv, tests,			\
				 sizeof(tests) / sizeof(tests[0]));	\
	}

#endif /* PW_UNIT_CORE_UNIT_H */
