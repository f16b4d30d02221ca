/* SPDX-License-Identifier: MIT */
/*
 * EFAULT-safe copies into and out of application memory.
 *
 * A mapping can vanish under the engine at any time (munmap racing a remote
 * op; userfaultfd reports UNMAP only after the pages are gone), so the
 * engine never touches application memory with a plain load or store.
 *
 * Two mechanisms:
 *  - guarded memcpy (default): the copy runs with a thread-local jump
 *    buffer armed; pagewire's SIGSEGV/SIGBUS handler (installed once, at
 *    the first pw_open) jumps back out when, and only when, the fault hit
 *    inside such a copy, and otherwise hands the signal to whatever handler
 *    was installed before it (or the default action). Costs nothing on the
 *    fast path: an 8-byte placement by process_vm_writev costs 1.6 us here,
 *    the guarded copy a few ns.
 *  - process_vm_writev/readv on our own pid (PW_SAFE_COPY=syscall, or when
 *    the handler could not be installed): the kernel copies and reports
 *    EFAULT. No signal handler involved, for applications that install their
 *    own SIGSEGV handler after pw_open() without chaining.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "util/util.h"

/*
 * ThreadSanitizer runs synchronous signal handlers through its own
 * machinery, and jumping out of one is not supported there: TSan builds use
 * the system-call copies (which TSan cannot see either, as it cannot see a
 * NIC's DMA: the application observes placement through completions).
 */
#if defined(__SANITIZE_THREAD__)
#define PW_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PW_TSAN 1
#endif
#endif

static struct sigaction old_segv, old_bus;
static bool guard_ok;
/*
 * volatile: the compiler must not drop the store before the copy as dead
 * (only the signal handler reads it, which the compiler cannot see).
 */
static _Thread_local sigjmp_buf *volatile guard_jmp;

static void fault_handler(int sig, siginfo_t *si, void *uc)
{
	sigjmp_buf *jb = (sigjmp_buf *)guard_jmp;
	struct sigaction *old;

	if (jb) {
		guard_jmp = NULL;
		siglongjmp(*jb, 1);
	}
	/* not a guarded copy: behave as if pagewire were not here */
	old = sig == SIGSEGV ? &old_segv : &old_bus;
	if (old->sa_flags & SA_SIGINFO) {
		old->sa_sigaction(sig, si, uc);
	} else if (old->sa_handler == SIG_DFL) {
		/* the faulting instruction runs again and takes the default action */
		signal(sig, SIG_DFL);
	} else if (old->sa_handler != SIG_IGN) {
		old->sa_handler(sig);
	}
}

static void guard_init(void)
{
	struct sigaction sa;
	const char *mode = getenv("PW_SAFE_COPY");

#ifdef PW_TSAN
	mode = "syscall";
#endif
	if (mode && strcmp(mode, "syscall") == 0)
		return;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = fault_handler;
	/*
	 * SA_NODEFER: siglongjmp(…, savemask 0) must not leave SIGSEGV
	 * blocked in this thread; SA_ONSTACK: use the application's
	 * alternate stack, if any, as its own handler would.
	 */
	sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSEGV, &sa, &old_segv) != 0)
		return;
	if (sigaction(SIGBUS, &sa, &old_bus) != 0) {
		sigaction(SIGSEGV, &old_segv, NULL);
		return;
	}
	guard_ok = true;
}

void pw_safe_copy_init(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, guard_init);
}

/*
 * getpid() is a system call in current glibc; cache it for the syscall
 * path (reset in a forked child).
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

#define PW_PAGE 4096ul

/*
 * Copy @len bytes under the guard, a page at a time so that the count is
 * exact: protection is per page, so a faulting page received no byte.
 * Return the bytes copied (short on a fault).
 */
static size_t guarded_copy(void *dst, const void *src, size_t len)
{
	sigjmp_buf jb;
	volatile size_t done = 0;

	/* page 0 is never mapped (mmap_min_addr), and memcpy(NULL) is UB */
	if (!dst || !src)
		return 0;
	if (sigsetjmp(jb, 0)) {
		guard_jmp = NULL;
		return done;
	}
	guard_jmp = &jb;
	while (done < len) {
		uintptr_t d = (uintptr_t)dst + done, s = (uintptr_t)src + done;
		size_t k = len - done;

		k = PW_MIN(k, PW_PAGE - (d & (PW_PAGE - 1)));
		k = PW_MIN(k, PW_PAGE - (s & (PW_PAGE - 1)));
		memcpy((void *)d, (const void *)s, k);
		done += k;
	}
	guard_jmp = NULL;
	return done;
}

ssize_t pw_safe_writev(const struct iovec *dst, int ndst, const void *src,
		       size_t len)
{
	struct iovec l = { .iov_base = (void *)src, .iov_len = len };
	ssize_t n;

	if (len == 0)
		return 0;
	if (guard_ok) {
		const char *s = src;
		size_t done = 0;

		for (int i = 0; i < ndst && done < len; i++) {
			size_t k = PW_MIN(dst[i].iov_len, len - done);
			size_t c = guarded_copy(dst[i].iov_base, s + done, k);

			done += c;
			if (c < k)
				break;
		}
		return done ? (ssize_t)done : -EFAULT;
	}
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

	if (guard_ok) {
		size_t c = len ? guarded_copy(dst, src, len) : 0;

		return c || !len ? (ssize_t)c : -EFAULT;
	}
	do {
		n = process_vm_readv(self_pid(), &l, 1, &r, 1, 0);
	} while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}
