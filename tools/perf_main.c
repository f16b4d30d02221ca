/* SPDX-License-Identifier: MIT */
/*
 * pagewire-perf: command line, --loopback and the top-level flow.
 *
 *   pagewire-perf TEST [options]              server
 *   pagewire-perf TEST [options] SERVER_HOST  client
 *   pagewire-perf TEST --loopback [options]   both, forked, on 127.0.0.1
 *
 * Exit status: 0 success, 1 the run failed (error completion, wrong data,
 * connection failure), 2 bad usage, 77 skipped (--swapped or hol on a
 * machine without swap).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "perf.h"
#include "tool_util.h"

#define TEST_NAMES "write_bw write_lat read_bw read_lat send_bw send_lat atomic_lat tcp_bw tcp_lat fault_lat hol reg inval_lat overcommit"

/* How long --loopback waits for its server after the client finished. */
#define LOOPBACK_REAP_MS	30000

static void usage(FILE *f)
{
	fprintf(f,
"Usage: " PERF_PROG " TEST [options] [SERVER_HOST]\n"
"\n"
"perftest-style benchmarks of pagewire (RDMA over TCP, demand-paged MRs).\n"
"Without SERVER_HOST this is the server: it listens, serves one run and\n"
"exits. With SERVER_HOST it is the client, which measures and reports.\n"
"Client and server must be given the same TEST; the server takes sizes,\n"
"iterations and QP count from the client (its own -s/-a size its buffers).\n"
"\n"
"Tests:\n"
"  write_bw    RDMA WRITE bandwidth (window of -t WRs per QP)\n"
"  write_lat   RDMA WRITE latency: WRITE_WITH_IMM ping-pong; each side waits\n"
"              for the receive completion of the peer's write, so blocking\n"
"              mode needs no memory polling. Reports half the round trip.\n"
"  read_bw     RDMA READ bandwidth (window of min(-t, %d) READs per QP)\n"
"  read_lat    RDMA READ latency: full operation time\n"
"  send_bw     SEND bandwidth (the server keeps %d receives posted)\n"
"  send_lat    SEND ping-pong latency: half the round trip\n"
"  atomic_lat  8-byte atomic latency: full operation time\n"
"  tcp_bw      baseline: plain TCP sockets (TCP_NODELAY), one connection per\n"
"              -q; the client streams -n messages of -s bytes from the same\n"
"              kind of buffer, the server receives them into its buffer and\n"
"              answers one byte at the end (verified); MB/sec as write_bw\n"
"  tcp_lat     baseline: TCP ping-pong of -s bytes, half the round trip\n"
"              (as write_lat)\n"
"  fault_lat   8-byte signalled WRITEs alternately to a resident page and to\n"
"              a page never touched (the server's buffer must be ODP, the\n"
"              default): full operation times; JSON adds resident_p50_us,\n"
"              resident_p99_us, added_p50_us, added_p99_us (what a\n"
"              responder fault adds, same run)\n"
"  hol         head-of-line blocking, two QPs (-q is fixed at 2): QP A\n"
"              streams -s WRITEs (default 1M), %d in flight, into a %d-message\n"
"              region of the server that the server pages out (MADV_PAGEOUT)\n"
"              before every pass over it, so A's WRITEs keep faulting on\n"
"              swapped pages; QP B does 8-byte signaled WRITEs one at a time\n"
"              (full operation time). %d phases of B alone alternate with %d\n"
"              of B while A runs; -n is B's samples per kind (default %d; a\n"
"              phase with A lasts at least one A pass). B samples that\n"
"              overlap a page-out request are left out (counted). Needs swap\n"
"              on the server, as --swapped. The lat_* fields and the table\n"
"              are B with A (#bytes: A's size); JSON adds hol_p50_us,\n"
"              hol_p99_us, alone_p50_us, alone_p99_us, p99_ratio (hol_p99 /\n"
"              alone_p99), a_msgs, a_MBps (while A ran), b_samples_alone,\n"
"              b_samples_hol, b_skipped_pageout, hol_all_p99_us (the\n"
"              skipped ones too) and swapped_out_frac. Then the client\n"
"              measures the machine's own head-of-line factor, same\n"
"              phases over plain TCP on 127.0.0.1 (blocking sockets,\n"
"              TCP_NODELAY, threads of its own): an 8-byte ping-pong alone\n"
"              and next to a stream of A-sized messages paced to a_MBps,\n"
"              as many samples of each kind as B took;\n"
"              JSON adds tcp_alone_p50_us, tcp_alone_p99_us,\n"
"              tcp_hol_p50_us, tcp_hol_p99_us, tcp_p99_ratio,\n"
"              p99_ratio_vs_tcp (p99_ratio / tcp_p99_ratio),\n"
"              tcp_samples_alone, tcp_samples_hol, tcp_pace_MBps and\n"
"              tcp_stream_MBps (what the stream moved)\n"
"  reg         local, no peer: pw_reg_mr + pw_dereg_mr cost against size\n"
"  overcommit  a forked target registers --ratio (8) times its --budget\n"
"              (64M) and this process writes and reads random 4 KiB pages\n"
"              across it for --seconds (10), 16 in flight; --policy=pinned|\n"
"              stall|drop|notify. Every byte is verified at the end\n"
"              (per-page checksums). JSON: policy, ops_per_s, bw_MBps,\n"
"              lat_p50_us, lat_p99_us, faults, invalidations, notifications,\n"
"              retransmitted_bytes, wasted_bytes, stall_ns, peak_rss_bytes,\n"
"              budget_bytes, region_bytes, verified (or error)\n"
"  inval_lat   local, both sides in this process on 127.0.0.1: the time\n"
"              from the target's madvise(DONTNEED) / munmap of a registered\n"
"              page returning to the peer having applied its INVALIDATE\n"
"              (NOTIFY policy); -n pages per event (default 1000)\n"
"              (4K .. 1G pinned, .. 1T odp; implicit), median of -n (default:\n"
"              1000, pinned ~1 GiB worth); -s one size, --mr one kind. JSON:\n"
"              mr, size, iters, reg_us, reg_min_us, dereg_us (or error)\n"
"\n"
"Options:\n"
"  -s, --size=SIZE      message size, K/M/G suffixes (powers of 2);\n"
"                       default 65536 (bw), 8 (lat) or 1M (hol); atomic_lat always\n"
"                       uses 8 (another -s is ignored with a warning)\n"
"  -n, --iters=N        iterations per size and QP; default 5000 (bw) or\n"
"                       1000 (lat), fewer for large sizes so that one size\n"
"                       moves at most 1 GiB (bw) or 64 MiB (lat) over all\n"
"                       QPs; an explicit -n is always honoured\n"
"  -a, --all            all sizes 2, 4, ..., 8M (atomic_lat: 8 only)\n"
"  -q, --qps=N          QPs (tcp_*: connections) run concurrently (1..%d),\n"
"                       default 1. bw tests drive all of them from one\n"
"                       thread on each side, as perftest: round-robin,\n"
"                       each QP's window kept full, completions of all\n"
"                       QPs awaited on one completion channel (tcp_bw:\n"
"                       poll() on all sockets). Latency tests run one\n"
"                       thread per QP. Results are aggregated; bw tests\n"
"                       add per-QP shares (see below)\n"
"  -p, --port=PORT      TCP port; default %d (--loopback: an ephemeral port)\n"
"  -t, --tx-depth=N     WRs in flight per QP for bw tests; default %d\n"
"  -Q, --cq-mod=N       bw tests: signal one WR in N (a completion per N);\n"
"                       default a quarter of the window, at most 64; 1\n"
"                       signals every WR, as libfabric's completions do\n"
"  -A, --atomic=OP      fetch_and_add (default) or cmp_and_swap\n"
"      --mr=MODE        how both sides register buffers: pinned (populate +\n"
"                       mlock), odp (PW_ACCESS_ON_DEMAND, default) or\n"
"                       implicit (one ODP key for the whole address space)\n"
"      --policy=P       responder fault policy of both sides' QPs: stall\n"
"                       (default: the faulting QP stops reading) or drop\n"
"                       (discard, NAK PAGE_FAULT, the requester resends) or\n"
"                       notify (INVALIDATE the peers; they FAULT_IN first)\n"
"      --first-touch    write_bw, one size, ODP: blocks of messages to target\n"
"                       pages nobody has touched (each message its own\n"
"                       slot) alternate with blocks to a resident slot, in\n"
"                       one run; JSON adds first_touch_bw_MBps,\n"
"                       resident_bw_MBps and vs_resident. After the timed\n"
"                       part the server times the kernel's page population\n"
"                       of fresh memory (median of %d fresh %u MiB regions,\n"
"                       MADV_POPULATE_WRITE in -s calls; without it, a\n"
"                       byte written per page): populate_MBps,\n"
"                       populate_method (madv_populate_write or touch),\n"
"                       populate_vs_resident (populate_MBps / resident: the\n"
"                       best ratio if population were the only cost, fully\n"
"                       overlapped), populate_serial_vs_resident\n"
"                       (populate_MBps / (populate_MBps + resident): the\n"
"                       ratio if population could not overlap the transfer\n"
"                       at all) and first_touch_vs_populate\n"
"                       (first_touch_bw_MBps / populate_MBps). A standalone\n"
"                       server needs --first-touch too\n"
"      --swapped        write_bw, one size, one QP, ODP: blocks of messages\n"
"                       into a region of the server that it pages out\n"
"                       (MADV_PAGEOUT, after checking the previous block's\n"
"                       data there) just before each such block alternate\n"
"                       with blocks into a resident region of the same size\n"
"                       (-s x a block); the page-outs are not timed. JSON adds\n"
"                       swapped_bw_MBps, resident_bw_MBps, vs_resident and\n"
"                       swapped_out_frac (pages mincore() found not resident\n"
"                       after the page-outs); the server then times the\n"
"                       kernel's swap-in the same way (regions of pattern\n"
"                       bytes paged out with MADV_PAGEOUT, then populated):\n"
"                       swapin_MBps, swapin_method, swapin_out_frac (its\n"
"                       pages not resident after the page-out),\n"
"                       swapin_vs_resident, swapin_serial_vs_resident and\n"
"                       swapped_vs_swapin (swapped_bw_MBps / swapin_MBps).\n"
"                       Needs swap on the server: without, it prints SKIP\n"
"                       and exits 77 (tests/scripts/with_zram_swap.sh sets\n"
"                       up zram swap as root). A standalone server needs\n"
"                       --swapped too\n"
"      --busy-poll      poll the CQ in a loop (TCP tests: recv() with\n"
"                       MSG_DONTWAIT in a loop), on both sides; also sets\n"
"                       PW_PROGRESS=busy before pw_open(), which asks the\n"
"                       library's progress engine to busy-poll too. The\n"
"                       default sleeps on the completion channel (blocking\n"
"                       recv()) and never spins. bw tests spin one thread\n"
"                       per side; latency tests one per QP and side: with\n"
"                       more QPs than cores, latencies become scheduler\n"
"                       time slices\n"
"      --baseline       also run the matching TCP test (write_bw, read_bw,\n"
"                       send_bw: tcp_bw; the latency tests: tcp_lat) with\n"
"                       the same sizes, iterations, QPs and completion mode,\n"
"                       interleaved size by size (TCP first), and report\n"
"                       vs_tcp: pagewire bw / TCP bw, or pagewire p50 / TCP\n"
"                       p50 (read_lat and atomic_lat against the full TCP\n"
"                       round trip, the others against half of it). A\n"
"                       standalone server needs --baseline too; it listens\n"
"                       for the TCP connections on -p + 1 (else an ephemeral\n"
"                       port) and tells the client in its connection data;\n"
"                       JSON adds tcp_bw_MBps (and tcp_min_share,\n"
"                       tcp_max_share), or tcp_lat_p50_us and\n"
"                       tcp_lat_p99_us, and vs_tcp\n"
"      --stats          pagewire tests: JSON adds a stats object with the\n"
"                       demand-paging counters (pw_query_stats) of the\n"
"                       client's and of the server's context at the end of\n"
"                       the run; the human output prints them too\n"
"      --vs-pinned      write_bw, read_bw, write_lat with --mr=odp or\n"
"                       implicit: both sides also register a pinned MR over\n"
"                       the same buffer, and the run alternates between the\n"
"                       two in blocks of messages (paired, same load); JSON\n"
"                       adds pair_bw_MBps and pinned_bw_MBps with vs_pinned\n"
"                       (ratio), or pair_lat_p50_us and pinned_lat_p50_us\n"
"                       with vs_pinned_us (difference). A standalone server\n"
"                       needs --vs-pinned too\n"
"      --loopback       fork the server side on 127.0.0.1 and run the client\n"
"      --json           one JSON object per result line on stdout (human\n"
"                       text goes to stderr)\n"
"  -h, --help           this text\n"
"  -V, --version        print the tool's and the library's version\n"
"\n"
"Units: MB = 10^6 bytes, MB/sec as perftest; latencies in microseconds.\n"
"BW peak is the best rate over any tenth of the run's messages.\n"
"Per-QP shares (bw tests, JSON per_qp_MBps, min_share, max_share,\n"
"share_interval_s; human: Share min/max): every QP gets -n messages and\n"
"all start at the same instant, so until the first QP completes its last\n"
"message every QP had work queued. Over that common interval each QP's\n"
"completed bytes (interpolated between its signaled completions; tcp_bw:\n"
"bytes the kernel took) divided by the mean over all QPs is its share,\n"
"and divided by the interval its MB/sec. A fair transport gives shares\n"
"near 1; a starved QP shows one near 0 (the early finishers up to -q).\n"
"Every run verifies data: READ results and atomic return values at the\n"
"client, landed WRITE/SEND payload at the server (verdict sent back);\n"
"tcp_bw: the last message of each size at the server, tcp_lat: the last\n"
"pong of each size at the client.\n"
"Exit status: 0 ok, 1 run failed (error completion, wrong data), 2 usage,\n"
"77 skipped (--swapped or hol without swap).\n",
		PERF_RD_ATOMIC, PERF_RX_DEPTH, PERF_HOL_WINDOW, PERF_HOL_A_SLOTS,
		PERF_HOL_PHASES, PERF_HOL_PHASES, PERF_HOL_DEFAULT_ITERS,
		PERF_MAX_QPS, PERF_DEFAULT_PORT, PERF_DEFAULT_TX_DEPTH,
		PERF_PLAT_REPEAT, PERF_PLAT_REGION >> 20);
}

static void __attribute__((format(printf, 1, 2), noreturn))
usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, PERF_PROG ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '" PERF_PROG " --help'.\n");
	exit(PERF_EXIT_USAGE);
}

enum {
	OPT_MR = 256,
	OPT_POLICY,
	OPT_FIRST_TOUCH,
	OPT_SWAPPED,
	OPT_JSON,
	OPT_BUSY_POLL,
	OPT_LOOPBACK,
	OPT_BASELINE,
	OPT_VS_PINNED,
	OPT_STATS,
	OPT_BUDGET,
	OPT_RATIO,
	OPT_SECONDS,
};

static const struct option long_opts[] = {
	{ "size",	 required_argument, NULL, 's' },
	{ "iters",	 required_argument, NULL, 'n' },
	{ "all",	 no_argument,	    NULL, 'a' },
	{ "qps",	 required_argument, NULL, 'q' },
	{ "port",	 required_argument, NULL, 'p' },
	{ "tx-depth",	 required_argument, NULL, 't' },
	{ "cq-mod",	 required_argument, NULL, 'Q' },
	{ "atomic",	 required_argument, NULL, 'A' },
	{ "help",	 no_argument,	    NULL, 'h' },
	{ "version",	 no_argument,	    NULL, 'V' },
	{ "mr",		 required_argument, NULL, OPT_MR },
	{ "policy",	 required_argument, NULL, OPT_POLICY },
	{ "first-touch", no_argument,	    NULL, OPT_FIRST_TOUCH },
	{ "swapped",	 no_argument,	    NULL, OPT_SWAPPED },
	{ "json",	 no_argument,	    NULL, OPT_JSON },
	{ "busy-poll",	 no_argument,	    NULL, OPT_BUSY_POLL },
	{ "loopback",	 no_argument,	    NULL, OPT_LOOPBACK },
	{ "baseline",	 no_argument,	    NULL, OPT_BASELINE },
	{ "vs-pinned",	 no_argument,	    NULL, OPT_VS_PINNED },
	{ "stats",	 no_argument,	    NULL, OPT_STATS },
	{ "budget",	 required_argument, NULL, OPT_BUDGET },
	{ "ratio",	 required_argument, NULL, OPT_RATIO },
	{ "seconds",	 required_argument, NULL, OPT_SECONDS },
	{ NULL, 0, NULL, 0 },
};

static uint64_t parse_num(const char *opt, const char *arg, uint64_t min,
			  uint64_t max)
{
	uint64_t v;

	if (tool_parse_u64(arg, min, max, &v))
		usage_error("%s: '%s' is not a number in %llu..%llu", opt, arg,
			    (unsigned long long)min, (unsigned long long)max);
	return v;
}

static void parse_args(int argc, char **argv, struct perf_opts *o)
{
	const char *test = NULL;
	bool qps_set = false;
	int c;

	memset(o, 0, sizeof(*o));
	o->mr = PERF_MR_ODP;
	o->policy = "stall";
	o->qps = 1;
	o->port = PERF_DEFAULT_PORT;
	o->tx_depth = PERF_DEFAULT_TX_DEPTH;

	opterr = 0;	/* our own messages, and exit code 2 */
	while ((c = getopt_long(argc, argv, ":s:n:aq:p:t:Q:A:hV", long_opts,
				NULL)) != -1) {
		switch (c) {
		case 's':
			if (tool_parse_size(optarg, &o->size) || o->size == 0 ||
			    o->size > PW_MAX_MSG_SIZE)
				usage_error("-s: bad size '%s' (1..2G, suffixes K, M, G)",
					    optarg);
			o->size_set = true;
			break;
		case 'n':
			o->iters = parse_num("-n", optarg, 1, 1000000000ull);
			o->iters_set = true;
			break;
		case 'a':
			o->all_sizes = true;
			break;
		case 'q':
			o->qps = (unsigned int)parse_num("-q", optarg, 1,
							 PERF_MAX_QPS);
			qps_set = true;
			break;
		case 'p':
			o->port = (unsigned int)parse_num("-p", optarg, 0, 65535);
			o->port_set = true;
			break;
		case 't':
			o->tx_depth = (unsigned int)parse_num("-t", optarg, 1,
							      PW_MAX_QP_WR - 8);
			break;
		case 'Q':
			o->cq_mod = (unsigned int)parse_num("-Q", optarg, 1,
							    PW_MAX_QP_WR - 8);
			break;
		case 'A':
			if (!strcasecmp(optarg, "fetch_and_add"))
				o->atomic = PERF_ATOMIC_FA;
			else if (!strcasecmp(optarg, "cmp_and_swap"))
				o->atomic = PERF_ATOMIC_CS;
			else
				usage_error("-A: unknown atomic '%s' (fetch_and_add, cmp_and_swap)",
					    optarg);
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 'V':
			tool_print_version(PERF_PROG);
			exit(0);
		case OPT_MR:
			o->mr_set = true;
			if (!strcmp(optarg, "pinned"))
				o->mr = PERF_MR_PINNED;
			else if (!strcmp(optarg, "odp"))
				o->mr = PERF_MR_ODP;
			else if (!strcmp(optarg, "implicit"))
				o->mr = PERF_MR_IMPLICIT;
			else
				usage_error("--mr: unknown mode '%s' (pinned, odp, implicit)",
					    optarg);
			break;
		case OPT_POLICY:
			/* pinned: overcommit only (checked with the test) */
			if (strcmp(optarg, "stall") && strcmp(optarg, "drop") &&
			    strcmp(optarg, "notify") && strcmp(optarg, "pinned"))
				usage_error("--policy: unknown policy '%s' (stall, drop, notify; overcommit: pinned too)",
					    optarg);
			o->policy = !strcmp(optarg, "drop") ? "drop" :
				    !strcmp(optarg, "notify") ? "notify" :
				    !strcmp(optarg, "pinned") ? "pinned" : "stall";
			break;
		case OPT_FIRST_TOUCH:
			o->first_touch = true;
			break;
		case OPT_SWAPPED:
			o->swapped = true;
			break;
		case OPT_JSON:
			o->json = true;
			break;
		case OPT_BUSY_POLL:
			o->busy_poll = true;
			break;
		case OPT_LOOPBACK:
			o->loopback = true;
			break;
		case OPT_BASELINE:
			o->baseline = true;
			break;
		case OPT_VS_PINNED:
			o->vs_pinned = true;
			break;
		case OPT_STATS:
			o->stats = true;
			break;
		case OPT_BUDGET:
			if (tool_parse_size(optarg, &o->budget) || !o->budget ||
			    o->budget % 4096)
				usage_error("--budget: '%s' is not a size in whole pages (e.g. 64M)",
					    optarg);
			break;
		case OPT_RATIO:
			o->ratio = (unsigned int)strtoul(optarg, NULL, 10);
			if (o->ratio < 1 || o->ratio > 1024)
				usage_error("--ratio: 1..1024 (region size / budget)");
			break;
		case OPT_SECONDS:
			o->seconds = (unsigned int)strtoul(optarg, NULL, 10);
			if (o->seconds < 1 || o->seconds > 3600)
				usage_error("--seconds: 1..3600");
			break;
		case ':':
			usage_error("option '%s' needs a value", argv[optind - 1]);
		default:
			if (optopt)
				usage_error("unknown option '-%c'", optopt);
			usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	for (int i = optind; i < argc; i++) {
		if (!test)
			test = argv[i];
		else if (!o->host)
			o->host = argv[i];
		else
			usage_error("unexpected argument '%s'", argv[i]);
	}
	if (!test)
		usage_error("no TEST given (" TEST_NAMES ")");
	if (!strcmp(test, "reg")) {
		/* local: no peer, no connection options */
		if (o->host || o->loopback || o->baseline || o->vs_pinned ||
		    o->swapped)
			usage_error("reg is local: no SERVER_HOST, --loopback, --baseline, --vs-pinned or --swapped");
		o->local_reg = true;
		return;
	}
	if (!strcmp(test, "overcommit")) {
		if (o->host || o->loopback || o->baseline || o->vs_pinned ||
		    o->swapped || o->first_touch)
			usage_error("overcommit runs both sides itself on 127.0.0.1: no SERVER_HOST, --loopback, --baseline, --vs-pinned, --swapped or --first-touch");
		o->local_over = true;
		return;
	}
	if (!strcmp(test, "inval_lat")) {
		if (o->host || o->loopback || o->baseline || o->vs_pinned ||
		    o->swapped)
			usage_error("inval_lat runs both sides itself on 127.0.0.1: no SERVER_HOST, --loopback, --baseline, --vs-pinned or --swapped");
		o->local_inval = true;
		return;
	}
	if (o->policy && !strcmp(o->policy, "pinned"))
		usage_error("--policy=pinned is for overcommit only");
	int t = perf_test_by_name(test);

	if (t < 0)
		usage_error("unknown test '%s' (" TEST_NAMES ")", test);
	o->test = (enum perf_test)t;
	if (o->loopback && o->host)
		usage_error("--loopback runs its own server; give no SERVER_HOST");
	if (o->host && o->port == 0)
		usage_error("-p 0 only makes sense for a server");
	if (t == PERF_FAULT_LAT && (o->baseline || o->vs_pinned))
		usage_error("fault_lat measures its own baseline (resident pages); no --baseline or --vs-pinned");
	if (t == PERF_FAULT_LAT && o->size_set && o->size != 8)
		usage_error("fault_lat writes 8 bytes; no -s");
	if (t == PERF_ATOMIC_LAT && o->size_set && o->size != 8) {
		/*
		 * As perftest's atomic tests: the size is fixed by the
		 * operation, so a -s shared with other tests is not an error.
		 */
		fprintf(stderr, PERF_PROG ": atomic_lat: atomics are 8 bytes; ignoring -s %llu\n",
			(unsigned long long)o->size);
		o->size = 8;
	}
	if (perf_tests[t].tcp && o->baseline) {
		/* A TCP test is its own baseline (a shared option list). */
		fprintf(stderr, PERF_PROG ": %s is a baseline itself; ignoring --baseline\n",
			test);
		o->baseline = false;
	}
	if (o->vs_pinned && t != PERF_WRITE_BW && t != PERF_READ_BW &&
	    t != PERF_WRITE_LAT)
		usage_error("--vs-pinned is for write_bw, read_bw and write_lat");
	if (o->first_touch && (t != PERF_WRITE_BW || o->all_sizes ||
			       o->vs_pinned || o->mr == PERF_MR_PINNED || o->qps > 1))
		usage_error("--first-touch is for write_bw with one size (-s), one QP and an ODP MR, without --vs-pinned");
	if (o->vs_pinned && o->mr == PERF_MR_PINNED)
		usage_error("--vs-pinned compares --mr=odp or implicit with pinned; this run is pinned already");
	if (o->swapped && (t != PERF_WRITE_BW || o->all_sizes || o->vs_pinned ||
			   o->first_touch || o->baseline ||
			   o->mr == PERF_MR_PINNED || o->qps > 1))
		usage_error("--swapped is for write_bw with one size (-s), one QP and an ODP MR, without --vs-pinned, --first-touch or --baseline");
	if (t == PERF_HOL) {
		if (qps_set && o->qps != 2)
			usage_error("hol runs two QPs (A and B); -q is fixed at 2");
		if (o->all_sizes || o->baseline || o->vs_pinned ||
		    o->first_touch || o->swapped)
			usage_error("hol measures its own baseline (B alone); no -a, --baseline, --vs-pinned, --first-touch or --swapped");
		if (o->mr == PERF_MR_PINNED)
			usage_error("hol pages memory out; pinned memory cannot be (--mr=odp or implicit)");
		o->qps = 2;
	}
	if (!o->size_set)
		o->size = perf_default_size(o->test);
	if (!o->iters_set)
		o->iters = 0;
}

static uint64_t make_seed(void)
{
	uint64_t seed;

	/* Different every run: stale data from an earlier run cannot pass. */
	if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
		seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^
		       tool_now_ns();
	return seed;
}

static struct perf_run *run_new(const struct perf_opts *o, bool server,
				bool quiet)
{
	struct perf_run *run = calloc(1, sizeof(*run));

	if (!run) {
		perf_fail("out of memory");
		return NULL;
	}
	run->o = o;
	run->server = server;
	run->quiet = quiet;
	run->human = o->json ? stderr : stdout;
	run->qps = o->qps;
	run->tx_depth = o->tx_depth;
	run->atomic = o->atomic;
	run->seed = make_seed();
	run->tcp_listen = -1;
	for (unsigned int i = 0; i < PERF_MAX_QPS; i++)
		run->eps[i].sock = -1;
	atomic_init(&run->abort, 0);
	if (perf_plan_build(o->test, o->size, o->all_sizes, o->iters,
			    o->iters_set, o->qps, &run->plan)) {
		perf_fail("bad size %llu for %s", (unsigned long long)o->size,
			  perf_tests[o->test].name);
		free(run);
		return NULL;
	}
	if (o->vs_pinned || o->first_touch || o->swapped)
		perf_plan_pair(&run->plan, o->test, o->iters_set);
	if (o->first_touch)
		perf_plan_first_touch(&run->plan);
	if (o->swapped)
		perf_plan_swapped(&run->plan);
	atomic_init(&run->hol_b_count, 0);
	atomic_init(&run->hol_stop, 0);
	atomic_init(&run->hol_pageout, 0);
	return run;
}

/*
 * The --baseline run next to pagewire run @pw: the matching TCP test with
 * the same options, and (set again by the server once the client's are
 * known) the same plan, QP count and depth.
 */
static struct perf_run *baseline_new(const struct perf_run *pw)
{
	struct perf_run *b = calloc(1, sizeof(*b));
	const struct perf_test_info *t = &perf_tests[pw->o->test];

	if (!b) {
		perf_fail("out of memory");
		return NULL;
	}
	b->own_opts = *pw->o;
	b->own_opts.test = perf_baseline_of(pw->o->test);
	b->o = &b->own_opts;
	b->server = pw->server;
	b->quiet = true;
	b->human = pw->human;
	b->qps = pw->qps;
	b->tx_depth = pw->tx_depth;
	b->plan = pw->plan;
	b->seed = make_seed();
	/* READ and atomics take a full round trip: compare with one. */
	b->tcp_full_rtt = !t->bw && !t->half_rtt;
	b->tcp_listen = -1;
	for (unsigned int i = 0; i < PERF_MAX_QPS; i++)
		b->eps[i].sock = -1;
	atomic_init(&b->abort, 0);
	return b;
}

static void baseline_free(struct perf_run *b)
{
	if (!b)
		return;
	perf_tcp_close(b);
	free(b);
}

/* Tell the --loopback client the port, as 2 little-endian bytes. */
static int notify_port(int notify_fd, uint16_t bound)
{
	uint8_t b[2];

	tool_put16(b, bound);
	if (write(notify_fd, b, sizeof(b)) != (ssize_t)sizeof(b)) {
		int err = errno ? errno : EIO;

		perf_fail("telling the client the port failed: %s",
			  strerror(err));
		return -err;
	}
	return 0;
}

/* The server side of tcp_bw / tcp_lat: no pagewire at all. */
static int run_tcp_server(const struct perf_opts *o, const char *bind_host,
			  uint16_t port, int notify_fd, bool quiet)
{
	struct perf_run *run = run_new(o, true, quiet);
	uint16_t bound = 0;
	int err;

	if (!run)
		return PERF_EXIT_FAIL;
	err = perf_tcp_listen(run, bind_host, port, false, &bound);
	if (err)
		goto out;
	if (notify_fd >= 0) {
		err = notify_port(notify_fd, bound);
		close(notify_fd);
		notify_fd = -1;
		if (err)
			goto out;
	} else if (!quiet) {
		fprintf(run->human, " Waiting for client to connect on port %u (%s)...\n",
			bound, perf_tests[o->test].name);
		fflush(run->human);
	}
	err = perf_tcp_accept(run, true);
	if (err)
		goto out;
	perf_report_header(run);
	err = perf_server_run(run);
	perf_report_footer(run);
out:
	if (notify_fd >= 0)
		close(notify_fd);
	perf_tcp_close(run);
	free(run);
	return err ? PERF_EXIT_FAIL : 0;
}

/*
 * The server side. @notify_fd >= 0 (--loopback): the bound port is
 * written there as 2 little-endian bytes once listening, then closed.
 * With --baseline one process serves both the pagewire QPs and the TCP
 * baseline connections (perf_server.c interleaves them).
 */
static int run_server(const struct perf_opts *o, const char *bind_host,
		      uint16_t port, int notify_fd, bool quiet)
{
	struct perf_run *run, *base = NULL;
	uint16_t bound = 0;
	int err;

	if (perf_tests[o->test].tcp)
		return run_tcp_server(o, bind_host, port, notify_fd, quiet);
	run = run_new(o, true, quiet);
	if (!run)
		return PERF_EXIT_FAIL;
	err = perf_run_open(run);
	if (err)
		goto out;
	err = perf_server_listen(run, bind_host, port, &bound);
	if (err)
		goto out;
	if (o->baseline) {
		/* The next port, unless ephemeral or taken: then any. */
		uint16_t want = (port == 0 || bound == 65535) ? 0 :
				(uint16_t)(bound + 1);

		base = baseline_new(run);
		if (!base) {
			err = -ENOMEM;
			goto out;
		}
		err = perf_tcp_listen(base, bind_host, want, true,
				      &run->tcp_port);
		if (err)
			goto out;
	}
	if (notify_fd >= 0) {
		err = notify_port(notify_fd, bound);
		close(notify_fd);
		notify_fd = -1;
		if (err)
			goto out;
	} else if (!quiet) {
		fprintf(run->human, " Waiting for client to connect on port %u (%s)...\n",
			bound, perf_tests[o->test].name);
		fflush(run->human);
	}
	err = perf_server_accept(run);
	if (err)
		goto out;
	if (base && (run->eps[0].peer.flags & PERF_WF_BASELINE)) {
		/* The client's sizes, iterations and QPs, as for pagewire. */
		base->plan = run->plan;
		base->qps = run->qps;
		base->tx_depth = run->tx_depth;
		err = perf_tcp_accept(base, false);
		if (err)
			goto out;
		run->baseline = base;
		if (!quiet)
			fprintf(run->human, " TCP baseline: %u connection%s on port %u\n",
				base->qps, base->qps == 1 ? "" : "s",
				run->tcp_port);
	}
	perf_report_header(run);
	err = perf_server_run(run);
	perf_report_footer(run);
out:
	if (notify_fd >= 0)
		close(notify_fd);
	perf_run_close(run);
	baseline_free(base);
	free(run);
	return err ? PERF_EXIT_FAIL : 0;
}

static int run_client(const struct perf_opts *o, const char *host,
		      uint16_t port)
{
	struct perf_run *run = run_new(o, false, false);
	bool tcp = perf_tests[o->test].tcp;
	int err;

	if (!run)
		return PERF_EXIT_FAIL;
	if (tcp) {
		err = perf_tcp_connect(run, host, port);
		if (!err)
			err = perf_client_run(run);
		perf_tcp_close(run);
		free(run);
		return err ? PERF_EXIT_FAIL : 0;
	}
	err = perf_run_open(run);
	if (!err)
		err = perf_client_connect(run, host, port);
	if (!err && o->baseline) {
		/* The server told us its TCP port in its connection data. */
		run->baseline = baseline_new(run);
		if (!run->baseline)
			err = -ENOMEM;
		else
			err = perf_tcp_connect(run->baseline, host,
					       run->eps[0].peer.tcp_port);
	}
	if (!err)
		err = perf_client_run(run);
	perf_run_close(run);
	baseline_free(run->baseline);
	free(run);
	return err ? PERF_EXIT_FAIL : 0;
}

/*
 * Wait for the forked server, at most @ms; kill it (SIGKILL, it is ours)
 * when it does not exit. Return: its exit status, or -1.
 */
static int reap_child(pid_t pid, int ms)
{
	int status;

	for (int waited = 0;; waited += 10) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			break;
		if (r < 0 && errno != EINTR) {
			perf_fail("waitpid: %s", strerror(errno));
			return -1;
		}
		if (waited >= ms) {
			perf_fail("the loopback server did not exit within %d s; killing it",
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
	perf_fail("the loopback server died of signal %d", WTERMSIG(status));
	return -1;
}

static int run_loopback(const struct perf_opts *o)
{
	uint16_t port = o->port_set ? (uint16_t)o->port : 0;
	uint8_t b[2];
	int fds[2], rc, child_rc;
	ssize_t n;
	pid_t pid;

	if (pipe(fds)) {
		perf_fail("pipe: %s", strerror(errno));
		return PERF_EXIT_FAIL;
	}
	/* Nothing buffered may be printed twice by the child. */
	fflush(stdout);
	fflush(stderr);
	/* Fork before pw_open: the engine's threads would not survive it. */
	pid = fork();
	if (pid < 0) {
		perf_fail("fork: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return PERF_EXIT_FAIL;
	}
	if (pid == 0) {
		close(fds[0]);
		exit(run_server(o, "127.0.0.1", port, fds[1], true));
	}
	close(fds[1]);
	do {
		n = read(fds[0], b, sizeof(b));
	} while (n < 0 && errno == EINTR);
	close(fds[0]);
	if (n != (ssize_t)sizeof(b)) {
		perf_fail("the loopback server failed before listening");
		reap_child(pid, LOOPBACK_REAP_MS);
		return PERF_EXIT_FAIL;
	}
	rc = run_client(o, "127.0.0.1", tool_get16(b));
	child_rc = reap_child(pid, LOOPBACK_REAP_MS);
	if (child_rc != 0) {
		if (child_rc > 0)
			perf_fail("the loopback server failed (exit status %d)",
				  child_rc);
		return PERF_EXIT_FAIL;
	}
	return rc;
}

int main(int argc, char **argv)
{
	struct perf_opts o;

	parse_args(argc, argv, &o);
	if (o.local_reg)
		return perf_reg_run(&o);
	if (o.local_inval)
		return perf_inval_run(&o);
	if (o.local_over)
		return perf_over_run(&o);
	/* --swapped, hol: the server's (here: this machine's) swap */
	if (perf_swap_check_or_skip(&o))
		return PERF_EXIT_SKIP;
	if (o.loopback)
		return run_loopback(&o);
	if (o.host)
		return run_client(&o, o.host, (uint16_t)o.port);
	return run_server(&o, NULL, (uint16_t)o.port, -1, false);
}
