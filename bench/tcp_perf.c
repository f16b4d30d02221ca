/*
 * tcp_perf: the raw-TCP baseline of bench/compare.sh, used only when
 * build/bin/pagewire-perf has no tcp_bw/tcp_lat tests of its own.
 *
 * It mirrors pagewire-perf's command line and JSON so that the harness can
 * use either:  tcp_perf tcp_bw|tcp_lat --loopback --json [-s SIZE] [-n ITERS]
 *              [-a] [--busy-poll]
 *   tcp_bw   one TCP connection (TCP_NODELAY), the client send()s ITERS
 *            messages of SIZE bytes from a page-aligned buffer; the server
 *            recv()s them into a page-aligned buffer and answers with an
 *            8-byte ACK once it has all bytes; time = first send to ACK.
 *   tcp_lat  8-byte ping-pong; reports half the round trip (perftest
 *            convention), p50/p99 over ITERS after 100 warm-up rounds.
 *            --busy-poll spins on recv(MSG_DONTWAIT) instead of blocking.
 * Defaults as pagewire-perf: 5000 (bw) / 1000 (lat) iterations, fewer for
 * large sizes so that one size moves at most 1 GiB (bw) or 64 MiB (lat);
 * -a runs sizes 2, 4, ..., 8M. MB = 10^6 bytes. Both processes stop by
 * themselves after 120 s (alarm), whatever happens.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct hdr {
	uint64_t size;
	uint64_t iters; /* 0 = quit */
};

static int busy;

static void die(const char *what)
{
	fprintf(stderr, "tcp_perf: %s: %s\n", what, strerror(errno));
	exit(1);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void send_all(int fd, const void *p, size_t len)
{
	const char *c = p;
	while (len) {
		ssize_t r = send(fd, c, len, MSG_NOSIGNAL);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			die("send");
		c += r;
		len -= (size_t)r;
	}
}

static void recv_all(int fd, void *p, size_t len)
{
	char *c = p;
	while (len) {
		ssize_t r = recv(fd, c, len, busy ? MSG_DONTWAIT : 0);
		if (r < 0 && (errno == EINTR || (busy && errno == EAGAIN)))
			continue;
		if (r == 0)
			errno = ECONNRESET;
		if (r <= 0)
			die("recv");
		c += r;
		len -= (size_t)r;
	}
}

static void tune(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void server(int fd, int lat, char *buf)
{
	struct hdr h;
	uint64_t ack = 1, v;
	for (;;) {
		recv_all(fd, &h, sizeof(h));
		if (h.iters == 0)
			return;
		send_all(fd, &ack, sizeof(ack)); /* ready */
		if (lat) {
			for (uint64_t i = 0; i < h.iters + 100; i++) {
				recv_all(fd, &v, sizeof(v));
				send_all(fd, &v, sizeof(v));
			}
		} else {
			/* receive size*iters bytes; the buffer is reused per message */
			for (uint64_t i = 0; i < h.iters; i++)
				recv_all(fd, buf, h.size);
			send_all(fd, &ack, sizeof(ack));
		}
	}
}

static uint64_t default_iters(int lat, uint64_t size)
{
	uint64_t it = lat ? 1000 : 5000, cap = lat ? (64u << 20) : (1u << 30);
	if (it * size > cap)
		it = cap / size;
	return it ? it : 1;
}

static void client(int fd, int lat, char *buf, uint64_t *sizes, int nsizes, uint64_t iters_opt)
{
	for (int s = 0; s < nsizes; s++) {
		uint64_t size = sizes[s], it = iters_opt ? iters_opt : default_iters(lat, size);
		struct hdr h = { size, it };
		uint64_t ack;
		send_all(fd, &h, sizeof(h));
		recv_all(fd, &ack, sizeof(ack));
		if (lat) {
			double *l = malloc(it * sizeof(double)), sum = 0;
			if (!l)
				die("malloc");
			for (uint64_t i = 0; i < it + 100; i++) {
				uint64_t v = i, back;
				double t0 = now_s();
				send_all(fd, &v, sizeof(v));
				recv_all(fd, &back, sizeof(back));
				double dt = (now_s() - t0) / 2 * 1e6;
				if (back != v) {
					fprintf(stderr, "tcp_perf: ping-pong mismatch\n");
					exit(1);
				}
				if (i >= 100)
					l[i - 100] = dt, sum += dt;
			}
			qsort(l, it, sizeof(double), cmp_double);
			printf("{\"test\":\"tcp_lat\",\"size\":8,\"iters\":%" PRIu64
			       ",\"completion\":\"%s\",\"lat_kind\":\"half_rtt\",\"lat_p50_us\":%.3f,"
			       "\"lat_p99_us\":%.3f,\"lat_avg_us\":%.3f,\"lat_min_us\":%.3f,"
			       "\"impl\":\"bench/tcp_perf\"}\n",
			       it, busy ? "busy_poll" : "blocking", l[it / 2], l[it * 99 / 100],
			       sum / (double)it, l[0]);
			free(l);
		} else {
			double t0 = now_s(), t1;
			for (uint64_t i = 0; i < it; i++)
				send_all(fd, buf, size);
			recv_all(fd, &ack, sizeof(ack));
			t1 = now_s();
			printf("{\"test\":\"tcp_bw\",\"size\":%" PRIu64 ",\"iters\":%" PRIu64
			       ",\"completion\":\"%s\",\"elapsed_s\":%.6f,\"bw_MBps\":%.3f,"
			       "\"msg_rate_Mpps\":%.6f,\"impl\":\"bench/tcp_perf\"}\n",
			       size, it, busy ? "busy_poll" : "blocking", t1 - t0,
			       (double)size * (double)it / (t1 - t0) / 1e6, (double)it / (t1 - t0) / 1e6);
		}
		fflush(stdout);
	}
	struct hdr q = { 0, 0 };
	send_all(fd, &q, sizeof(q));
}

static uint64_t parse_size(const char *s)
{
	char *end;
	uint64_t v = strtoull(s, &end, 10);
	if (*end == 'k' || *end == 'K')
		v <<= 10;
	else if (*end == 'm' || *end == 'M')
		v <<= 20;
	else if (*end)
		v = 0;
	if (!v) {
		fprintf(stderr, "tcp_perf: bad size '%s'\n", s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "size", required_argument, NULL, 's' }, { "iters", required_argument, NULL, 'n' },
		{ "all", no_argument, NULL, 'a' },	   { "busy-poll", no_argument, NULL, 'B' },
		{ "loopback", no_argument, NULL, 'l' },	   { "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },	   { NULL, 0, NULL, 0 }
	};
	uint64_t sizes[32], iters = 0, size = 0;
	int nsizes = 0, all = 0, lat, c;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	char *buf;

	if (argc < 2 || (strcmp(argv[1], "tcp_bw") && strcmp(argv[1], "tcp_lat"))) {
		fprintf(stderr, "usage: tcp_perf tcp_bw|tcp_lat --loopback --json [-s SIZE] "
				"[-n ITERS] [-a] [--busy-poll]\n");
		return 2;
	}
	lat = !strcmp(argv[1], "tcp_lat");
	optind = 2;
	while ((c = getopt_long(argc, argv, "s:n:ah", opts, NULL)) != -1) {
		switch (c) {
		case 's': size = parse_size(optarg); break;
		case 'n': iters = strtoull(optarg, NULL, 10); break;
		case 'a': all = 1; break;
		case 'B': busy = 1; break;
		case 'l': case 'j': break; /* always loopback, always JSON */
		default: return 2;
		}
	}
	if (lat)
		sizes[nsizes++] = 8;
	else if (all)
		for (uint64_t s = 2; s <= (8u << 20); s <<= 1)
			sizes[nsizes++] = s;
	else
		sizes[nsizes++] = size ? size : 65536;
	if (posix_memalign((void **)&buf, 4096, 8u << 20))
		die("posix_memalign");
	memset(buf, 0x5a, 8u << 20);

	int ls = socket(AF_INET, SOCK_STREAM, 0);
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) || listen(ls, 1) ||
	    getsockname(ls, (struct sockaddr *)&sa, &sl))
		die("listen on 127.0.0.1");
	alarm(120);
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int fd = accept(ls, NULL, NULL);
		if (fd < 0)
			die("accept");
		tune(fd);
		server(fd, lat, buf);
		_exit(0);
	}
	close(ls);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		die("connect");
	tune(fd);
	client(fd, lat, buf, sizes, nsizes, iters);
	close(fd);
	int st;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
