/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <pagewire/pagewire.h>

#include "util/util.h"

static _Thread_local char pw_errbuf[256];

void pw_set_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(pw_errbuf, sizeof(pw_errbuf), fmt, ap);
	va_end(ap);
}

void pw_clear_error(void)
{
	pw_errbuf[0] = '\0';
}

const char *pw_last_error(void)
{
	return pw_errbuf;
}

/*
 * process_vm_writev() on our own pid copies through the kernel, which
 * reports an unmapped or read-only destination as EFAULT. Same thread group,
 * so no ptrace permission is involved.
 */
/* per thread and per call: a transient failure (EMFILE) costs one call */
static _Thread_local bool random_weak;

bool pw_random_weak(void)
{
	return random_weak;
}

static bool urandom_bytes(unsigned char *p, size_t len)
{
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

	while (fd >= 0 && len) {
		ssize_t n = read(fd, p, len);

		if (n <= 0 && !(n < 0 && errno == EINTR))
			break;
		if (n > 0) {
			p += n;
			len -= (size_t)n;
		}
	}
	if (fd >= 0)
		close(fd);
	return len == 0;
}

void pw_random_bytes(void *buf, size_t len)
{
	static atomic_uint_fast64_t ctr;
	unsigned char *p = buf;

	random_weak = false;
	while (len) {
		ssize_t n = getrandom(p, len, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		p += n;
		len -= (size_t)n;
	}
	if (!len || urandom_bytes(p, len))
		return;
	/* no kernel randomness at all: never leave @buf undefined */
	random_weak = true;
	for (size_t i = 0; i < len; i++) {
		uint64_t x = pw_now_ns() ^ ((uint64_t)getpid() << 32) ^
			     atomic_fetch_add_explicit(&ctr, 0x9e3779b97f4a7c15ull,
						       memory_order_relaxed);

		x ^= x >> 31;
		x *= 0xbf58476d1ce4e5b9ull;
		p[i] = (unsigned char)(x ^ (x >> 29));
	}
}

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PW_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define PW_TSAN 1
#endif

#ifdef PW_TSAN
void __tsan_read_range(void *addr, unsigned long size);
const char *__tsan_default_options(void);

/* see pw_sendmsg(): the reads are recorded by us, before the call */
const char *__tsan_default_options(void)
{
	return "intercept_send=0";
}

/*
 * Record reads of the payload: bytes [from, to) of the iovec list. Before
 * the call only the first PRE bytes (a call rarely takes more than a socket
 * buffer, and recording all of a large remainder on every partial send
 * would cost O(n^2)); what a call took beyond that is recorded after it.
 */
#define PW_TSAN_SEND_PRE (256u * 1024)

static void tsan_read_iov(const struct msghdr *mh, size_t from, size_t to)
{
	size_t off = 0;

	for (size_t i = 0; i < mh->msg_iovlen && off < to; i++) {
		size_t len = mh->msg_iov[i].iov_len;
		size_t a = from > off ? from - off : 0;
		size_t b = to - off < len ? to - off : len;

		if (a < b)
			__tsan_read_range((char *)mh->msg_iov[i].iov_base + a, b - a);
		off += len;
	}
}

ssize_t pw_sendmsg(int fd, const struct msghdr *mh, int flags)
{
	ssize_t r;

	tsan_read_iov(mh, 0, PW_TSAN_SEND_PRE);
	r = sendmsg(fd, mh, flags);
	if (r > (ssize_t)PW_TSAN_SEND_PRE)
		tsan_read_iov(mh, PW_TSAN_SEND_PRE, (size_t)r);
	return r;
}
#else
ssize_t pw_sendmsg(int fd, const struct msghdr *mh, int flags)
{
	return sendmsg(fd, mh, flags);
}
#endif
