/* SPDX-License-Identifier: MIT */
/*
 * hello: the README's example as a complete program.
 *
 * Two processes on loopback, as if they were two hosts: a forked server
 * maps 1 TiB of address space, registers it on demand (ODP: nothing is
 * pinned or touched) and accepts a connection, handing out the address
 * and rkey of its region in the connection's private data. The client,
 * the README's code, registers its own 1 TiB, connects, RDMA-WRITEs one
 * page into the server's region and waits for the completion. The server
 * learns that the client is done when the client disconnects (an async
 * event), then checks the page in its own memory.
 *
 * Run it without arguments: it prints what each side did and exits 0.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pagewire/pagewire.h>

/* The client writes it, the server checks for it. */
#define MSG		"hello, pagewire"
#define TIMEOUT_MS	10000

/*
 * What each side tells the other in the connection's private data (no
 * padding: every byte sent is initialised).
 */
struct info {
	uint64_t addr;
	uint32_t rkey;
	uint32_t reserved;
};

static void die(const char *what, int err)
{
	fprintf(stderr, "hello: %s failed: %s%s%s\n", what, strerror(err),
		*pw_last_error() ? ": " : "", pw_last_error());
	exit(1);
}

/*
 * The server, in its own process: a region, a listener, one connection.
 * It writes its port to @port_fd once it listens.
 */
static int server(int port_fd)
{
	struct pw_context *ctx = pw_open(NULL);
	struct pw_pd *pd = pw_alloc_pd(ctx);
	struct pw_cq *cq = pw_create_cq(ctx, 16, NULL, NULL, 0);
	size_t len = 1ull << 40;
	size_t off = 3ull << 30;	/* the client writes 3 GiB into it */
	struct pw_async_event ev;
	struct pollfd pfd;

	if (!ctx || !pd || !cq)
		die("server setup", errno);
	char *buf = mmap(NULL, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (buf == MAP_FAILED)
		die("mmap", errno);
	struct pw_mr *mr = pw_reg_mr(pd, buf, len, PW_ACCESS_LOCAL_WRITE |
				     PW_ACCESS_REMOTE_WRITE | PW_ACCESS_ON_DEMAND);
	if (!mr)
		die("pw_reg_mr", errno);

	struct pw_listener *l = pw_listen(ctx, "127.0.0.1", 0);
	if (!l)
		die("pw_listen", errno);
	uint16_t port = pw_listener_port(l);
	if (write(port_fd, &port, sizeof(port)) != (ssize_t)sizeof(port))
		die("write", errno);
	close(port_fd);

	struct info my_info = { .addr = (uintptr_t)(buf + off), .rkey = mr->rkey };
	struct pw_qp_init_attr attr = { .send_cq = cq, .recv_cq = cq };
	struct pw_conn_param cp = { .private_data = &my_info,
				    .private_data_len = sizeof(my_info),
				    .timeout_ms = TIMEOUT_MS };
	struct pw_qp *qp = pw_accept(l, pd, &attr, &cp);
	if (!qp)
		die("pw_accept", errno);

	/*
	 * The client disconnects once its WRITE has completed, and RC
	 * delivers in order: when PW_EVENT_QP_PEER_DISCONNECTED arrives,
	 * the data is in place. Wait for it at most TIMEOUT_MS.
	 */
	pfd.fd = pw_get_async_fd(ctx);
	pfd.events = POLLIN;
	if (poll(&pfd, 1, TIMEOUT_MS) != 1)
		die("waiting for the client", ETIMEDOUT);
	if (pw_get_async_event(ctx, &ev))
		die("pw_get_async_event", EINVAL);
	printf("server: async event: %s\n", pw_event_type_str(ev.event_type));
	bool done = ev.event_type == PW_EVENT_QP_PEER_DISCONNECTED;
	pw_ack_async_event(&ev);

	/* The page the client wrote: the message, then zeros. */
	bool ok = memcmp(buf + off, MSG, sizeof(MSG)) == 0;
	for (size_t i = sizeof(MSG); ok && i < 4096; i++)
		ok = buf[off + i] == 0;
	printf("server: %s \"%s\" %zu GiB into its %zu TiB region\n",
	       ok ? "found" : "did NOT find", MSG, off >> 30, len >> 40);

	pw_destroy_qp(qp);
	pw_close_listener(l);
	pw_dereg_mr(mr);
	pw_destroy_cq(cq);
	pw_dealloc_pd(pd);
	pw_close(ctx);
	munmap(buf, len);
	return done && ok ? 0 : 1;
}

int main(void)
{
	int fds[2], status;
	uint16_t port;

	if (pipe(fds))
		die("pipe", errno);
	pid_t pid = fork();
	if (pid < 0)
		die("fork", errno);
	if (pid == 0) {
		close(fds[0]);
		exit(server(fds[1]));
	}
	close(fds[1]);
	if (read(fds[0], &port, sizeof(port)) != (ssize_t)sizeof(port)) {
		fprintf(stderr, "hello: the server did not start\n");
		waitpid(pid, &status, 0);
		return 1;
	}
	close(fds[0]);

	/* ---- the README's example ---- */
	struct pw_context *ctx = pw_open(NULL);
	struct pw_pd *pd = pw_alloc_pd(ctx);
	struct pw_comp_channel *ch = pw_create_comp_channel(ctx);
	struct pw_cq *cq = pw_create_cq(ctx, 256, NULL, ch, 0);
	if (!ctx || !pd || !ch || !cq)
		die("setup", errno);

	/* 1 TiB, registered in microseconds: nothing is pinned or touched */
	size_t len = 1ull << 40;
	char *buf = mmap(NULL, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (buf == MAP_FAILED)
		die("mmap", errno);
	struct pw_mr *mr = pw_reg_mr(pd, buf, len, PW_ACCESS_LOCAL_WRITE |
				     PW_ACCESS_REMOTE_WRITE | PW_ACCESS_REMOTE_READ |
				     PW_ACCESS_ON_DEMAND);
	if (!mr)
		die("pw_reg_mr", errno);

	/* connect; exchange (addr, rkey) in the private data, as with rdma_cm */
	struct info my_info = { .addr = (uintptr_t)buf, .rkey = mr->rkey }, peer;
	struct pw_qp_init_attr attr = { .send_cq = cq, .recv_cq = cq };
	struct pw_conn_param cp = { .private_data = &my_info,
				    .private_data_len = sizeof(my_info) };
	struct pw_qp *qp = pw_connect(pd, &attr, "127.0.0.1", port, &cp);
	if (!qp)
		die("pw_connect", errno);
	memcpy(&peer, qp->peer_private_data, sizeof(peer));

	/* one-sided write into the peer's region */
	strcpy(buf, "hello, pagewire");
	struct pw_sge sge = { .addr = (uintptr_t)buf, .length = 4096, .lkey = mr->lkey };
	struct pw_send_wr wr = { .wr_id = 1, .sg_list = &sge, .num_sge = 1,
				 .opcode = PW_WR_RDMA_WRITE,
				 .send_flags = PW_SEND_SIGNALED };
	wr.wr.rdma.remote_addr = peer.addr;
	wr.wr.rdma.rkey = peer.rkey;
	int err = pw_post_send(qp, &wr, NULL);
	if (err)
		die("pw_post_send", -err);

	/* sleep until it completes: arm the CQ, poll, wait for an event */
	struct pw_wc wc;
	struct pw_cq *ev_cq;
	void *ev_ctx;
	pw_req_notify_cq(cq, 0);
	while (pw_poll_cq(cq, 1, &wc) == 0) {
		if (pw_get_cq_event(ch, &ev_cq, &ev_ctx, 10000 /* ms */))
			die("waiting for the completion", ETIMEDOUT);
		pw_ack_cq_events(ev_cq, 1);
		pw_req_notify_cq(cq, 0);
	}
	if (wc.status != PW_WC_SUCCESS) {
		fprintf(stderr, "write: %s\n", pw_wc_status_str(wc.status));
		exit(1);
	}
	/* ---- end of the README's example ---- */
	printf("client: wrote 4096 bytes to 0x%llx (rkey 0x%x)\n",
	       (unsigned long long)peer.addr, peer.rkey);

	/* Disconnecting tells the server we are done. */
	pw_destroy_qp(qp);
	pw_dereg_mr(mr);
	pw_destroy_cq(cq);
	pw_destroy_comp_channel(ch);
	pw_dealloc_pd(pd);
	pw_close(ctx);
	munmap(buf, len);

	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0) {
		fprintf(stderr, "hello: the server failed\n");
		return 1;
	}
	printf("hello: OK\n");
	return 0;
}
