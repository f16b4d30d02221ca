/* SPDX-License-Identifier: MIT */
/* Small shared helpers: container_of, time, the thread-local error text. */
#ifndef PW_UTIL_UTIL_H
#define PW_UTIL_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

#define PW_MIN(a, b) ((a) < (b) ? (a) : (b))
#define PW_MAX(a, b) ((a) > (b) ? (a) : (b))
#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

static inline uint64_t pw_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * CLOCK_MONOTONIC as of the last timer tick (1-4 ms old, never ahead of
 * pw_now_ns()): a memory read in the vDSO, for stamps on the data path
 * that only bounds of seconds compare against (transport liveness).
 */
/* the coarse clock's step, at most (HZ = 100) */
#define PW_COARSE_TICK_NS	10000000ull

static inline uint64_t pw_coarse_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint32_t pw_roundup_pow2(uint32_t v)
{
	uint32_t r = 1;

	while (r < v)
		r <<= 1;
	return r;
}

/* Record a sentence for pw_last_error() in this thread. */
void pw_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void pw_clear_error(void);

/*
 * EFAULT-safe copies into and out of this process's memory (safecopy.c).
 * The engine never dereferences application memory directly: a mapping may
 * vanish at any time (munmap racing a remote op), and that must become
 * EFAULT, never SIGSEGV. Return: bytes copied (short on a fault) or -errno.
 * pw_safe_copy_init() (called by pw_open) installs the fault guard.
 */
void pw_safe_copy_init(void);
ssize_t pw_safe_writev(const struct iovec *dst, int ndst, const void *src,
		       size_t len);
ssize_t pw_safe_write(void *dst, const void *src, size_t len);
ssize_t pw_safe_read(void *dst, const void *src, size_t len);

/*
 * Raw memory (rawmem.c): zeroed blocks, a power of two pages each, carved
 * from a reservation of our own, never from malloc. For what the
 * notifier's handler allocates, and for what is allocated under a lock the
 * handler takes (the page-table lock, the async-event lock): an
 * application thread may hold malloc's lock while its munmap waits for the
 * handler. And never mapped into a gap of an ODP MR's range, where a peer
 * could write. pw_raw_alloc returns NULL with errno set; pw_raw_free takes
 * the length given to pw_raw_alloc; pw_raw_size is the usable size of such
 * a block (0: too big). Freed blocks are reused, not unmapped.
 */
void *pw_raw_alloc(size_t len);
void pw_raw_free(void *p, size_t len);
size_t pw_raw_size(size_t len);

/*
 * sendmsg(2) for the data path. TSan builds record the payload reads
 * before the call: TSan's interceptor records them after it returns, when
 * on loopback the peer may already have received the bytes, completed the
 * op and reused the buffer, which it then reports as a race
 * (integration.op.mixed_modes). Its own late check is turned off for
 * these builds (intercept_send=0, util.c); its ordering of sockets (a
 * send releases, a receive acquires) stays. Elsewhere plain sendmsg.
 */
ssize_t pw_sendmsg(int fd, const struct msghdr *mh, int flags);

/*
 * Fill @buf with cryptographically random bytes (keys must be
 * unpredictable): getrandom(2), else /dev/urandom. Should both fail (a
 * seccomp filter, no /dev, out of fds), @buf gets a clock-based mix that
 * is NOT unpredictable and pw_random_weak() (this thread's last call) is
 * true: the key table then refuses to make a key (docs/security.md)
 * rather than hand out a guessable one; PSNs and QP numbers may use it.
 */
void pw_random_bytes(void *buf, size_t len);
bool pw_random_weak(void);

#endif /* PW_UTIL_UTIL_H */
