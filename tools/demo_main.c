/* SPDX-License-Identifier: MIT */
/*
 * pagewire-demo (what `make demo` runs): forks a target and an initiator
 * that talk over loopback, then prints a short verified summary.
 *
 * Exit status: 0 verified, 1 failed, 2 bad usage.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "demo.h"
#include "tool_util.h"

/* How long to wait for the target to exit after the initiator is done. */
#define REAP_MS	30000

static void usage(FILE *f)
{
	fprintf(f,
"Usage: " DEMO_PROG " [options]\n"
"\n"
"Two processes over loopback. The target maps a huge region (virtual\n"
"only), registers it on demand (ODP) and listens. The initiator WRITEs\n"
"seeded patterns of 8 B .. 1 MiB to non-overlapping ranges scattered over\n"
"the whole region, READs them all back and compares byte for byte, runs\n"
"FETCH_ADD / CMP_SWAP sequences on scattered 8-byte targets checking every\n"
"returned value and the final values, then sends the seed: the target\n"
"regenerates the plan and checks its own memory, guard bytes included.\n"
"\n"
"Options:\n"
"  -r, --region=SIZE   target region, K/M/G suffixes; default 64G\n"
"  -w, --writes=N      write ranges; default %d\n"
"  -A, --atomics=N     atomic targets (4 atomics each); default %d\n"
"  -S, --seed=N        seed (default: random; printed)\n"
"  -h, --help          this text\n"
"  -V, --version       print the tool's and the library's version\n",
		DEMO_DEFAULT_WRITES, DEMO_DEFAULT_ATOMICS);
}

static void __attribute__((noreturn)) bad_usage(const char *what,
						 const char *arg)
{
	fprintf(stderr, DEMO_PROG ": %s '%s'\nTry '" DEMO_PROG " --help'.\n",
		what, arg ? arg : "");
	exit(2);
}

static void parse_args(int argc, char **argv, struct demo_opts *o)
{
	static const struct option lo[] = {
		{ "region",  required_argument, NULL, 'r' },
		{ "writes",  required_argument, NULL, 'w' },
		{ "atomics", required_argument, NULL, 'A' },
		{ "seed",    required_argument, NULL, 'S' },
		{ "help",    no_argument,       NULL, 'h' },
		{ "version", no_argument,       NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	int c;

	memset(o, 0, sizeof(*o));
	o->region_len = DEMO_DEFAULT_REGION;
	o->writes = DEMO_DEFAULT_WRITES;
	o->atomics = DEMO_DEFAULT_ATOMICS;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":r:w:A:S:hV", lo, NULL)) != -1) {
		switch (c) {
		case 'r':
			if (tool_parse_size(optarg, &o->region_len) ||
			    o->region_len < DEMO_MIN_REGION)
				bad_usage("--region: need a size >= 64M, got", optarg);
			break;
		case 'w':
			if (tool_parse_u64(optarg, 1, 1000000, &v))
				bad_usage("--writes: need 1..1000000, got", optarg);
			o->writes = (unsigned int)v;
			break;
		case 'A':
			if (tool_parse_u64(optarg, 0, 1000000, &v))
				bad_usage("--atomics: need 0..1000000, got", optarg);
			o->atomics = (unsigned int)v;
			break;
		case 'S':
			if (tool_parse_u64(optarg, 0, UINT64_MAX, &o->seed))
				bad_usage("--seed: not a number:", optarg);
			o->seed_set = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 'V':
			tool_print_version(DEMO_PROG);
			exit(0);
		case ':':
			bad_usage("option needs a value:", argv[optind - 1]);
		default:
			bad_usage("unknown option", argv[optind - 1]);
		}
	}
	if (optind < argc)
		bad_usage("unexpected argument", argv[optind]);

	/* Refuse an impossible plan here, before two processes wait on it. */
	struct demo_plan plan;

	if (demo_plan_build(0, o->region_len, o->writes, o->atomics, &plan)) {
		fprintf(stderr, DEMO_PROG ": %u writes + %u atomic targets do not fit in %llu bytes (each needs a slot of >= 1 MiB + 4 KiB)\n"
			"Try '" DEMO_PROG " --help'.\n", o->writes, o->atomics,
			(unsigned long long)o->region_len);
		exit(2);
	}
	demo_plan_free(&plan);
	if (!o->seed_set && getrandom(&o->seed, sizeof(o->seed), 0) !=
			    (ssize_t)sizeof(o->seed))
		o->seed = tool_now_ns() ^ (uint64_t)getpid();
}

/* Wait for the target at most @ms, then kill it (it is our child). */
static int reap_target(pid_t pid, int ms)
{
	int status;

	for (int waited = 0;; waited += 10) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			break;
		if (r < 0 && errno != EINTR)
			return -1;
		if (waited >= ms) {
			demo_err("main", "target did not exit within %d s; killing it",
				 ms / 1000);
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return -1;
		}
		struct timespec ts = { 0, 10 * 1000 * 1000 };

		nanosleep(&ts, NULL);
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	demo_err("main", "target died of signal %d", WTERMSIG(status));
	return -1;
}

static void print_summary(const struct demo_opts *o, const struct demo_stats *s,
			  double elapsed)
{
	char b1[32], b2[32], b3[32];
	uint64_t moved = s->bytes_written + s->bytes_read + s->bytes_atomic;
	double secs_w = (double)s->t_write_ns / 1e9;
	double secs_r = (double)s->t_read_ns / 1e9;

	printf(DEMO_PROG ": RDMA over TCP into a demand-paged (ODP) region\n");
	printf("  region      : %s virtual at the target, ODP, registered in %.1f us\n",
	       tool_fmt_bytes(s->region_len, b1, sizeof(b1)),
	       (double)s->target.reg_ns / 1e3);
	printf("  seed        : %llu\n", (unsigned long long)o->seed);
	printf("  writes      : %llu ranges of 8 B .. 1 MiB, %s, %.2f s (%.0f MB/s)\n",
	       (unsigned long long)s->writes,
	       tool_fmt_bytes(s->bytes_written, b1, sizeof(b1)), secs_w,
	       secs_w > 0 ? (double)s->bytes_written / secs_w / 1e6 : 0.0);
	printf("  reads       : %llu (every range, compared byte for byte), %s, %.2f s (%.0f MB/s)\n",
	       (unsigned long long)s->reads,
	       tool_fmt_bytes(s->bytes_read, b1, sizeof(b1)), secs_r,
	       secs_r > 0 ? (double)s->bytes_read / secs_r / 1e6 : 0.0);
	printf("  atomics     : %llu (FETCH_ADD, CMP_SWAP hit and miss) on %u targets, %.3f s\n",
	       (unsigned long long)s->atomics, o->atomics,
	       (double)s->t_atomic_ns / 1e9);
	printf("  bytes moved : %s\n", tool_fmt_bytes(moved, b1, sizeof(b1)));
	printf("  target check: %llu ranges + guard bytes verified in its own memory\n",
	       (unsigned long long)s->target.checked);
	printf("  target RSS  : %s for a %s region (%.3f%%)\n",
	       tool_fmt_bytes(s->target.rss, b2, sizeof(b2)),
	       tool_fmt_bytes(s->region_len, b3, sizeof(b3)),
	       s->region_len ? 100.0 * (double)s->target.rss /
				       (double)s->region_len : 0.0);
	printf("  elapsed     : %.2f s\n", elapsed);
}

int main(int argc, char **argv)
{
	struct demo_opts o;
	struct demo_stats st;
	uint64_t t0;
	uint8_t b[2];
	int fds[2], rc, trc;
	ssize_t n;
	pid_t pid;

	parse_args(argc, argv, &o);
	if (pipe(fds)) {
		perror(DEMO_PROG ": pipe");
		return 1;
	}
	t0 = tool_now_ns();
	fflush(stdout);
	fflush(stderr);
	/* Fork before any pw_open: engine threads do not survive fork. */
	pid = fork();
	if (pid < 0) {
		perror(DEMO_PROG ": fork");
		return 1;
	}
	if (pid == 0) {
		close(fds[0]);
		exit(demo_target_main(&o, fds[1]));
	}
	close(fds[1]);
	do {
		n = read(fds[0], b, sizeof(b));
	} while (n < 0 && errno == EINTR);
	close(fds[0]);
	if (n != (ssize_t)sizeof(b)) {
		demo_err("main", "the target failed before listening");
		reap_target(pid, REAP_MS);
		printf(DEMO_PROG ": FAILED (target setup)\n");
		return 1;
	}
	rc = demo_initiator_run(&o, tool_get16(b), &st);
	trc = reap_target(pid, REAP_MS);
	if (rc == 0 && trc == 0) {
		print_summary(&o, &st, (double)(tool_now_ns() - t0) / 1e9);
		printf(DEMO_PROG ": verified OK\n");
		return 0;
	}
	printf(DEMO_PROG ": FAILED (%s%s%s; seed %llu, details above)\n",
	       rc ? "initiator checks failed" : "",
	       rc && trc ? ", " : "",
	       trc ? "target failed" : "", (unsigned long long)o.seed);
	return 1;
}
