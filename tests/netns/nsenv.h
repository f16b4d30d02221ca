/* SPDX-License-Identifier: MIT */
/*
 * nsenv - "hosts" for the multi-host tests: network namespaces joined by
 * veth pairs, set up and torn down around one test run.
 *
 * A run of itest_netns is three layers of processes:
 *  - the supervisor (main): checks what the test needs (root, ip,
 *    iptables, netns, veth) and skips with exit 77 and the reason when
 *    something is missing; creates the namespaces and links; forks the
 *    runner; tears everything down whatever way the runner ends (exit,
 *    failure, watchdog, crash, a signal to the supervisor);
 *  - the runner: pwt_main() with the test case. It opens no pagewire
 *    context: it only forks the hosts, runs commands (iptables, ss, kill)
 *    and checks what the hosts report;
 *  - the hosts: pwt_fork() children that setns(2) into their namespace
 *    before they open a context (the fork rule of pwtest.h).
 *
 * Namespaces are named pwnt<supervisor pid>-<letter>; links get
 * 10.77.<link>.1 (first end) and .2 (second end), /24. A supervisor that
 * was SIGKILLed (CTest's timeout) cannot clean up: the next run deletes
 * namespaces of pwnt<pid> prefixes whose pid is gone.
 */
#ifndef PW_NSENV_H
#define PW_NSENV_H

#include <stdbool.h>
#include <stddef.h>

#define NS_MAX_HOSTS	4
#define NS_MAX_LINKS	4

struct ns_link {
	int a, b;		/* host indexes */
	char ifa[16], ifb[16];	/* interface names in a and in b */
	char ipa[32], ipb[32];	/* addresses (no prefix length) */
};

struct ns_topo {
	int nhosts;
	char ns[NS_MAX_HOSTS][32];
	int nlinks;
	struct ns_link link[NS_MAX_LINKS];
	int mtu;		/* 0: veth default */
	bool need_iptables;
	char iptables[32];	/* the iptables binary that works here */
};

/*
 * Runs @cmd with /bin/sh -c, stdout and stderr into @out (may be NULL).
 * Returns the exit status (0..255), or -1 when it could not run or died
 * by a signal.
 */
int ns_sh(char *out, size_t outlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The same; fails the test (pwt_fail) with the command's output unless 0. */
#define NS_SH(...) ns_sh_ok_at(__FILE__, __LINE__, __VA_ARGS__)
void ns_sh_ok_at(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Network namespace of host @h: "ip netns exec NAME" prefix material. */
const char *ns_name(int h);
/* Link @l's address on host @h's end. */
const char *ns_ip(int l, int h);
/* Link @l's interface name on host @h. */
const char *ns_if(int l, int h);
/* The iptables binary in use (iptables or iptables-legacy). */
const char *ns_iptables(void);

/*
 * Moves the calling process (single-threaded, before any context) into
 * host @h's namespace; fails the test otherwise.
 */
void ns_enter(int h);

/*
 * Supervisor entry: @topo describes the hosts (names are filled in);
 * @run is the runner's body, whose return value is the exit code.
 * Returns the exit code for main(): the runner's, 1 if it was killed or
 * hung, 77 (with the reason printed) when the environment cannot host
 * the test.
 */
int ns_supervise(struct ns_topo *topo, const char *test, int limit_s,
		 int (*run)(void *arg), void *arg);

/* The topology in force (the runner and hosts inherit it). */
extern struct ns_topo ns_topo;

#endif /* PW_NSENV_H */
