/* SPDX-License-Identifier: MIT */
/*
 * nsenv - network-namespace "hosts" for the multi-host tests. See nsenv.h.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nsenv.h"
#include "pwtest.h"

struct ns_topo ns_topo;

#define NETNS_DIR "/run/netns"

static volatile sig_atomic_t sup_signal;	/* signal that ended the run */
static volatile pid_t sup_runner;

/* ------------------------------------------------------------------ */
/* Commands                                                            */
/* ------------------------------------------------------------------ */

static int ns_vsh(char *out, size_t outlen, const char *fmt, va_list ap)
{
	char cmd[1024], buf[512];
	size_t used = 0;
	FILE *f;
	int st, n;

	n = vsnprintf(cmd, sizeof(cmd) - 8, fmt, ap);
	if (n < 0 || (size_t)n >= sizeof(cmd) - 8)
		return -1;
	strcat(cmd, " 2>&1");
	if (out && outlen)
		out[0] = '\0';
	fflush(stdout);
	fflush(stderr);
	f = popen(cmd, "r");
	if (!f)
		return -1;
	while (fgets(buf, sizeof(buf), f)) {
		size_t l = strlen(buf);

		if (out && used + l < outlen) {
			memcpy(out + used, buf, l + 1);
			used += l;
		}
	}
	st = pclose(f);
	if (st < 0 || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

int ns_sh(char *out, size_t outlen, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = ns_vsh(out, outlen, fmt, ap);
	va_end(ap);
	return rc;
}

void ns_sh_ok_at(const char *file, int line, const char *fmt, ...)
{
	char out[2048], cmd[1024];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	va_start(ap, fmt);
	rc = ns_vsh(out, sizeof(out), fmt, ap);
	va_end(ap);
	if (rc != 0)
		pwt_fail(file, line, "command failed (status %d): %s\n%s", rc, cmd, out);
}

const char *ns_name(int h)
{
	return ns_topo.ns[h];
}

static const struct ns_link *link_of(int l, int h)
{
	const struct ns_link *k = &ns_topo.link[l];

	PWT_ASSERTF(l >= 0 && l < ns_topo.nlinks && (k->a == h || k->b == h),
		    "host %d is not on link %d", h, l);
	return k;
}

const char *ns_ip(int l, int h)
{
	const struct ns_link *k = link_of(l, h);

	return k->a == h ? k->ipa : k->ipb;
}

const char *ns_if(int l, int h)
{
	const struct ns_link *k = link_of(l, h);

	return k->a == h ? k->ifa : k->ifb;
}

const char *ns_iptables(void)
{
	return ns_topo.iptables;
}

void ns_enter(int h)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), NETNS_DIR "/%s", ns_name(h));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	PWT_ASSERTF(fd >= 0, "open %s: %s", path, strerror(errno));
	PWT_ASSERTF(setns(fd, CLONE_NEWNET) == 0, "setns %s: %s", path,
		    strerror(errno));
	close(fd);
}

/* ------------------------------------------------------------------ */
/* Set-up and tear-down                                                */
/* ------------------------------------------------------------------ */

/* Namespaces of earlier runs whose supervisor died without cleaning up. */
static void sweep_stale(void)
{
	DIR *d = opendir(NETNS_DIR);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d)) != NULL) {
		int pid = 0;
		char c = 0;

		if (sscanf(e->d_name, "pwnt%d-%c", &pid, &c) != 2 || pid <= 0)
			continue;
		if (kill(pid, 0) == 0 || errno != ESRCH)
			continue;
		if (ns_sh(NULL, 0, "ip netns del %s", e->d_name) == 0)
			printf("nsenv: removed stale namespace %s\n", e->d_name);
	}
	closedir(d);
}

/* Kills what is left in our namespaces (all started by this run). */
static void teardown(const struct ns_topo *t, int created)
{
	for (int h = 0; h < created; h++) {
		char out[4096], *p, *end;

		if (ns_sh(out, sizeof(out), "ip netns pids %s", t->ns[h]) == 0)
			for (p = out; *p; p = end) {
				long pid = strtol(p, &end, 10);

				if (end == p)
					break;
				if (pid > 1 && pid != getpid())
					kill((pid_t)pid, SIGKILL);
			}
		if (ns_sh(out, sizeof(out), "ip netns del %s", t->ns[h]) != 0)
			fprintf(stderr, "nsenv: ip netns del %s: %s", t->ns[h], out);
	}
}

static int skip(const char *test, const char *why, const char *detail)
{
	printf("SKIP %s: %s%s%s\n", test, why, detail && *detail ? ": " : "",
	       detail ? detail : "");
	return PWT_SKIP_CODE;
}

static void chomp(char *s)
{
	size_t l = strlen(s);

	while (l && (s[l - 1] == '\n' || s[l - 1] == ' '))
		s[--l] = '\0';
}

/* Returns 0, or PWT_SKIP_CODE / 1 after printing why. */
static int setup(struct ns_topo *t, const char *test, int *created)
{
	char out[2048];

	for (int h = 0; h < t->nhosts; h++) {
		if (ns_sh(out, sizeof(out), "ip netns add %s", t->ns[h]) != 0) {
			chomp(out);
			return skip(test, "cannot create network namespaces", out);
		}
		(*created)++;
		if (ns_sh(out, sizeof(out), "ip -n %s link set lo up", t->ns[h]) != 0) {
			chomp(out);
			fprintf(stderr, "FAIL %s: lo up in %s: %s\n", test, t->ns[h], out);
			return 1;
		}
	}
	for (int l = 0; l < t->nlinks; l++) {
		struct ns_link *k = &t->link[l];

		snprintf(k->ifa, sizeof(k->ifa), "to-%c", 'a' + k->b);
		snprintf(k->ifb, sizeof(k->ifb), "to-%c", 'a' + k->a);
		snprintf(k->ipa, sizeof(k->ipa), "10.77.%d.1", l + 1);
		snprintf(k->ipb, sizeof(k->ipb), "10.77.%d.2", l + 1);
		if (ns_sh(out, sizeof(out), "ip -n %s link add %s type veth peer name %s netns %s",
			  t->ns[k->a], k->ifa, k->ifb, t->ns[k->b]) != 0) {
			chomp(out);
			return skip(test, "cannot create veth pairs", out);
		}
		if (ns_sh(out, sizeof(out),
			  "ip -n %s addr add %s/24 dev %s && ip -n %s addr add %s/24 dev %s"
			  " && ip -n %s link set %s up && ip -n %s link set %s up",
			  t->ns[k->a], k->ipa, k->ifa, t->ns[k->b], k->ipb, k->ifb,
			  t->ns[k->a], k->ifa, t->ns[k->b], k->ifb) != 0) {
			chomp(out);
			fprintf(stderr, "FAIL %s: configuring link %d: %s\n", test, l, out);
			return 1;
		}
		if (t->mtu && ns_sh(out, sizeof(out),
				    "ip -n %s link set %s mtu %d && ip -n %s link set %s mtu %d",
				    t->ns[k->a], k->ifa, t->mtu, t->ns[k->b], k->ifb,
				    t->mtu) != 0) {
			chomp(out);
			fprintf(stderr, "FAIL %s: mtu %d on link %d: %s\n", test, t->mtu, l, out);
			return 1;
		}
	}
	if (t->need_iptables) {
		static const char *const bins[] = { "iptables", "iptables-legacy" };

		for (size_t i = 0; i < PWT_ARRAY_SIZE(bins) && !t->iptables[0]; i++)
			if (ns_sh(out, sizeof(out), "ip netns exec %s %s -w -S OUTPUT",
				  t->ns[0], bins[i]) == 0)
				snprintf(t->iptables, sizeof(t->iptables), "%s", bins[i]);
		if (!t->iptables[0]) {
			chomp(out);
			return skip(test, "iptables does not work here (Debian package iptables)",
				    out);
		}
	}
	return 0;
}

static void on_signal(int sig)
{
	pid_t r = sup_runner;

	sup_signal = sig;
	if (r > 0)
		kill(-r, SIGKILL);
}

int ns_supervise(struct ns_topo *topo, const char *test, int limit_s,
		 int (*run)(void *arg), void *arg)
{
	struct sigaction sa;
	siginfo_t si;
	int created = 0, rc, st = 0;
	pid_t pid;

	if (geteuid() != 0)
		return skip(test, "needs root (network namespaces, veth pairs, iptables)", NULL);
	if (ns_sh(NULL, 0, "ip -V") != 0 || ns_sh(NULL, 0, "ip netns list") != 0)
		return skip(test, "iproute2's ip (with netns support) is not installed", NULL);
	sweep_stale();
	for (int h = 0; h < topo->nhosts; h++)
		snprintf(topo->ns[h], sizeof(topo->ns[h]), "pwnt%d-%c", (int)getpid(), 'a' + h);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGALRM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	rc = setup(topo, test, &created);
	if (rc == 0 && sup_signal) {
		fprintf(stderr, "FAIL %s: signal %d during set-up\n", test, (int)sup_signal);
		rc = 1;
	}
	if (rc != 0) {
		teardown(topo, created);
		return rc;
	}
	ns_topo = *topo;
	printf("nsenv: hosts");
	for (int h = 0; h < topo->nhosts; h++)
		printf(" %s", topo->ns[h]);
	for (int l = 0; l < topo->nlinks; l++)
		printf("; link %s(%s) <-> %s(%s)", topo->link[l].ipa, topo->ns[topo->link[l].a],
		       topo->link[l].ipb, topo->ns[topo->link[l].b]);
	printf("%s%s\n", topo->iptables[0] ? "; filter: " : "", topo->iptables);
	fflush(stdout);
	fflush(stderr);

	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "FAIL %s: fork: %s\n", test, strerror(errno));
		teardown(topo, created);
		return 1;
	}
	if (pid == 0) {
		/* The runner: its own process group, so that the supervisor
		 * can end it and every host it forked at once. */
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		signal(SIGALRM, SIG_DFL);
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() == 1)
			_exit(1);
		rc = run(arg);
		fflush(stdout);
		fflush(stderr);
		_exit(rc);
	}
	setpgid(pid, pid);
	sup_runner = pid;
	if (sup_signal)
		kill(-pid, SIGKILL);
	alarm((unsigned int)limit_s);

	/* Wait without reaping, so that the group id cannot be reused
	 * before the rest of the group is killed. */
	memset(&si, 0, sizeof(si));
	while (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT) != 0) {
		if (errno != EINTR) {
			fprintf(stderr, "FAIL %s: waitid: %s\n", test, strerror(errno));
			break;
		}
	}
	alarm(0);
	kill(-pid, SIGKILL);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	sup_runner = 0;
	teardown(topo, created);

	if (sup_signal == SIGALRM) {
		fprintf(stderr, "FAIL %s: no result within %d s (runner killed)\n", test, limit_s);
		return 1;
	}
	if (sup_signal) {
		fprintf(stderr, "FAIL %s: interrupted by signal %d\n", test, (int)sup_signal);
		return 1;
	}
	if (WIFSIGNALED(st)) {
		fprintf(stderr, "FAIL %s: runner killed by signal %d\n", test, WTERMSIG(st));
		return 1;
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}
