/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/uio.h>
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
/*
 * getpid() is a system call in current glibc; the placement path calls it
 * for every small message, so cache it (reset in a forked child).
 */
static pid_t pw_pid;

static void pid_reset(void)
{
	__atomic_store_n(&pw_pid, 0, __ATOMIC_RELAXED);
}

static void pid_atfork(void)
{
	pthread_atfork(NULL, NULL, pid_reset);
}

static pid_t self_pid(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pid_t p = __atomic_load_n(&pw_pid, __ATOMIC_RELAXED);

	if (p)
		return p;
	pthread_once(&once, pid_atfork);
	p = getpid();
	__atomic_store_n(&pw_pid, p, __ATOMIC_RELAXED);
	return p;
}

ssize_t pw_safe_writev(const struct iovec *dst, int ndst, const void *src,
		       size_t len)
{
	struct iovec l = { .iov_base = (void *)src, .iov_len = len };
	ssize_t n;

	if (len == 0)
		return 0;
	do {
		n = process_vm_writev(self_pid(), &l, 1, dst, (unsigned long)ndst, 0);
	} while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

ssize_t pw_safe_write(void *dst, const void *src, size_t len)
{
	struct iovec r = { .iov_base = dst, .iov_len = len };

	return pw_safe_writev(&r, 1, src, len);
}

ssize_t pw_safe_read(void *dst, const void *src, size_t len)
{
	struct iovec l = { .iov_base = dst, .iov_len = len };
	struct iovec r = { .iov_base = (void *)src, .iov_len = len };
	ssize_t n;

	do {
		n = process_vm_readv(self_pid(), &l, 1, &r, 1, 0);
	} while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

void pw_random_bytes(void *buf, size_t len)
{
	unsigned char *p = buf;

	while (len) {
		ssize_t n = getrandom(p, len, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			/* getrandom cannot fail on Linux >= 3.17 once seeded */
			n = 0;
			break;
		}
		p += n;
		len -= (size_t)n;
	}
}
