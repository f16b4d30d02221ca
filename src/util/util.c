/* SPDX-License-Identifier: MIT */
#include <errno.h>
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

#ifdef PW_TSAN_WIRE
char pw_tsan_wire;	/* the object "the wire" is released and acquired on */
#endif
