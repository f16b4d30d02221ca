/* SPDX-License-Identifier: MIT */
/*
 * The notifier's handler never allocates with malloc (util.h, "Raw
 * memory"): an application thread may hold malloc's lock while its munmap
 * of registered memory waits in the kernel for the handler to read the
 * event (glibc's heap trim does; libfabric #5554 deadlocked that way).
 *
 * This executable replaces malloc, calloc, realloc and free with wrappers
 * around glibc's own (__libc_malloc, ...), so it can
 *  - count the allocations made by the handler thread ("pw-notify"), and
 *  - play the allocator lock: a thread holds it across munmap calls, and
 *    every other thread's malloc waits for it, as an arena lock would.
 * Sanitizer builds replace malloc themselves: there the cases skip (77).
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "unit.h"
#include "pagewire/pagewire.h"
#include "paging/notifier.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define NO_INTERPOSE 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
	__has_feature(memory_sanitizer)
#define NO_INTERPOSE 1
#endif
#endif

static atomic_bool counting;		/* count the handler's allocations */
static atomic_int handler_allocs;
static atomic_bool arena_on;		/* malloc waits for @arena */
static pthread_mutex_t arena = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local bool arena_owner;

#ifndef NO_INTERPOSE
void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t sz);
void *__libc_realloc(void *p, size_t n);
void __libc_free(void *p);

static void alloc_hook(void)
{
	if (atomic_load_explicit(&counting, memory_order_relaxed)) {
		char name[16] = "";

		if (prctl(PR_GET_NAME, name) == 0 && !strcmp(name, "pw-notify"))
			atomic_fetch_add(&handler_allocs, 1);
	}
	if (atomic_load_explicit(&arena_on, memory_order_acquire) && !arena_owner) {
		/* the arena lock, taken for the length of the call */
		pthread_mutex_lock(&arena);
		pthread_mutex_unlock(&arena);
	}
}

void *malloc(size_t n)
{
	alloc_hook();
	return __libc_malloc(n);
}

void *calloc(size_t n, size_t sz)
{
	alloc_hook();
	return __libc_calloc(n, sz);
}

void *realloc(void *p, size_t n)
{
	alloc_hook();
	return __libc_realloc(p, n);
}

void free(void *p)
{
	if (p)
		alloc_hook();
	__libc_free(p);
}
#endif

#define PG 4096ul

struct env {
	struct pw_context *ctx;
	struct pw_pd *pd;
	struct pw_mr *mr;
	char *buf;
	size_t len;
};

/* 77 (CTest skip) with the reason, if the case cannot run here. */
static void skip_unless_runnable(void)
{
#ifdef NO_INTERPOSE
	printf("SKIP: a sanitizer build replaces malloc itself\n");
	fflush(stdout);
	exit(77);
#endif
}

static bool env_open(struct env *e, size_t pages)
{
	memset(e, 0, sizeof(*e));
	e->ctx = pw_open(NULL);
	if (!e->ctx)
		return false;
	if (!pw_notifier_on()) {
		printf("SKIP: no userfaultfd here (the notifier is off)\n");
		fflush(stdout);
		exit(77);
	}
	e->pd = pw_alloc_pd(e->ctx);
	e->len = pages * PG;
	e->buf = mmap(NULL, e->len, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!e->pd || e->buf == MAP_FAILED)
		return false;
	memset(e->buf, 0x5a, e->len);
	return true;
}

static bool env_reg(struct env *e)
{
	e->mr = pw_reg_mr(e->pd, e->buf, e->len,
			  PW_ACCESS_LOCAL_WRITE | PW_ACCESS_REMOTE_WRITE |
			  PW_ACCESS_REMOTE_READ | PW_ACCESS_ON_DEMAND);
	return e->mr != NULL;
}

static void env_close(struct env *e)
{
	if (e->mr)
		CHECK_INT(pw_dereg_mr(e->mr), 0);
	if (e->buf && e->buf != MAP_FAILED)
		munmap(e->buf, e->len);
	if (e->pd)
		CHECK_INT(pw_dealloc_pd(e->pd), 0);
	if (e->ctx)
		CHECK_INT(pw_close(e->ctx), 0);
}

/*
 * Take @want events (nonblocking, up to 10 s), checking each is an
 * UNMAPPED/REMAPPED event of @e->mr at a page-aligned offset inside it.
 */
static int drain_events(struct env *e, int want)
{
	int got = 0;
	uint64_t end = unit_now_ns() + 10000000000ull;
	int fl = fcntl(pw_get_async_fd(e->ctx), F_GETFL);

	fcntl(pw_get_async_fd(e->ctx), F_SETFL, fl | O_NONBLOCK);
	while (got < want && unit_now_ns() < end) {
		struct pw_async_event ev;
		int ret = pw_get_async_event(e->ctx, &ev);

		if (ret == -EAGAIN) {
			unit_sleep_ms(1);
			continue;
		}
		CHECK_INT(ret, 0);
		if (ret)
			break;
		CHECK_PTR(ev.element.mr, e->mr);
		CHECK(ev.event_type == PW_EVENT_MR_UNMAPPED ||
		      ev.event_type == PW_EVENT_MR_REMAPPED);
		CHECK(ev.offset % PG == 0 && ev.length % PG == 0 &&
		      ev.length > 0 && ev.offset + ev.length <= e->len);
		pw_ack_async_event(&ev);
		got++;
	}
	return got;
}

/*
 * Hundreds of holes (the MR's dead set grows past its first block, async
 * nodes past their first slab), page drops (REMOVE) and an mremap
 * (REMAP): the handler applies every one without a single malloc.
 */
static void test_handler_no_malloc(void)
{
	enum { HOLES = 600 };
	struct env e;
	int got;

	skip_unless_runnable();
	REQUIRE(env_open(&e, 2 * HOLES + 64));
	REQUIRE(env_reg(&e));
	atomic_store(&handler_allocs, 0);
	atomic_store(&counting, true);
	for (int i = 0; i < HOLES; i++)
		CHECK_INT(munmap(e.buf + (size_t)(2 * i + 1) * PG, PG), 0);
	/* REMOVE: the pages go, the mapping and the MR range stay */
	CHECK_INT(madvise(e.buf + 2 * HOLES * PG, 16 * PG, MADV_DONTNEED), 0);
	/* REMAP: the old range of a moved mapping is dead */
	{
		void *to = mmap(NULL, 16 * PG, PROT_NONE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		REQUIRE(to != MAP_FAILED);
		CHECK(mremap(e.buf + (2 * HOLES + 32) * PG, 16 * PG, 16 * PG,
			     MREMAP_MAYMOVE | MREMAP_FIXED, to) == to);
		munmap(to, 16 * PG);
	}
	got = drain_events(&e, HOLES + 1);
	atomic_store(&counting, false);
	CHECK_INT(got, HOLES + 1);
	CHECK_INT(atomic_load(&handler_allocs), 0);
	env_close(&e);
}

static atomic_bool dl_done;

/*
 * A thread of its own, not SIGALRM: the stuck munmap waits killably in
 * the kernel, and the engine's threads block signals, so an alarm would
 * stay pending. It never allocates (write, _exit).
 */
static void *dl_watchdog(void *arg)
{
	static const char msg[] =
		"DEADLOCK: munmap under the allocator lock did not return in 30 s: "
		"the notifier's handler waits for that lock\n";

	(void)arg;
	for (int i = 0; i < 3000; i++) {
		if (atomic_load(&dl_done))
			return NULL;
		unit_sleep_ms(10);
	}
	(void)!write(2, msg, sizeof(msg) - 1);
	_exit(1);
}

/*
 * The deadlock itself: this thread holds "malloc's lock" (the wrapper's
 * arena) across many munmaps of registered memory, each of which returns
 * only once the handler read its event; every other thread's malloc
 * waits meanwhile. A handler that allocated would never read the next.
 */
static void test_munmap_under_malloc_lock(void)
{
	enum { HOLES = 300 };
	struct env e;
	pthread_t wd;

	skip_unless_runnable();
	REQUIRE(env_open(&e, 2 * HOLES));
	REQUIRE(env_reg(&e));
	REQUIRE(pthread_create(&wd, NULL, dl_watchdog, NULL) == 0);
	pthread_mutex_lock(&arena);
	arena_owner = true;
	atomic_store_explicit(&arena_on, true, memory_order_release);
	for (int i = 0; i < HOLES; i++)
		CHECK_INT(munmap(e.buf + (size_t)(2 * i + 1) * PG, PG), 0);
	atomic_store_explicit(&arena_on, false, memory_order_release);
	arena_owner = false;
	pthread_mutex_unlock(&arena);
	atomic_store(&dl_done, true);
	pthread_join(wd, NULL);
	CHECK_INT(drain_events(&e, HOLES), HOLES);
	env_close(&e);
}

/*
 * Registration over a range with a hole takes the per-mapping path
 * (/proc/self/maps, read without stdio): the mapped parts are watched.
 */
static void test_register_over_hole(void)
{
	struct env e;

	REQUIRE(env_open(&e, 64));
	CHECK_INT(munmap(e.buf + 10 * PG, 4 * PG), 0);
	REQUIRE(env_reg(&e));
	CHECK_INT(munmap(e.buf + 40 * PG, PG), 0);	/* after the hole */
	CHECK_INT(munmap(e.buf + 2 * PG, PG), 0);	/* before it */
	CHECK_INT(drain_events(&e, 2), 2);
	env_close(&e);
}

static const struct unit_test tests[] = {
	{ "handler_no_malloc", test_handler_no_malloc },
	{ "munmap_under_malloc_lock", test_munmap_under_malloc_lock },
	{ "register_over_hole", test_register_over_hole },
};

UNIT_MAIN(tests)
