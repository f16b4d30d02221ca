/* SPDX-License-Identifier: MIT */
/*
 * pwraw - hand-made wire protocol v1 messages for raw-socket tests.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "pwraw.h"

struct pw_hdr pwr_hdr(uint8_t opcode, uint32_t psn)
{
	struct pw_hdr h;

	memset(&h, 0, sizeof(h));
	h.version = PW_WIRE_VERSION;
	h.opcode = opcode;
	h.psn = psn;
	return h;
}

void pwr_send_hdr(int fd, const struct pw_hdr *h)
{
	uint8_t buf[PW_WIRE_HDR_LEN];

	pw_wire_encode_hdr(h, buf);
	pwt_write_all(fd, buf, sizeof(buf));
}

void pwr_send_conn_msg(int fd, uint8_t opcode, uint32_t psn,
		       const struct pw_wire_conn *c)
{
	uint8_t buf[PW_WIRE_HDR_LEN + PW_WIRE_CONN_FIXED_LEN + PW_WIRE_MAX_PDATA];
	struct pw_hdr h;
	int n;

	n = pw_wire_encode_conn(c, buf + PW_WIRE_HDR_LEN,
				sizeof(buf) - PW_WIRE_HDR_LEN);
	PWT_ASSERTF(n >= PW_WIRE_CONN_FIXED_LEN, "pw_wire_encode_conn: %d", n);
	memset(&h, 0, sizeof(h));
	h.version = PW_WIRE_VERSION;
	h.opcode = opcode;
	h.psn = psn;
	h.payload_len = (uint32_t)n;
	pw_wire_encode_hdr(&h, buf);
	pwt_write_all(fd, buf, PW_WIRE_HDR_LEN + (size_t)n);
}

void pwr_send_connect_req(int fd, uint32_t psn, uint32_t qpn,
			  const void *pdata, uint16_t pdata_len)
{
	struct pw_wire_conn c;

	memset(&c, 0, sizeof(c));
	c.min_version = PW_WIRE_VERSION;
	c.max_version = PW_WIRE_VERSION;
	c.qpn = qpn;
	c.max_rd_atomic = 16;
	c.max_dest_rd_atomic = 16;
	PWT_ASSERT(pdata_len <= PW_WIRE_MAX_PDATA);
	c.pdata_len = pdata_len;
	if (pdata_len)
		memcpy(c.pdata, pdata, pdata_len);
	pwr_send_conn_msg(fd, PW_OP_CONNECT_REQ, psn, &c);
}

int pwr_read_msg(int fd, struct pw_hdr *h, void *payload, size_t cap,
		 size_t *payload_len, int timeout_ms)
{
	uint8_t hb[PW_WIRE_HDR_LEN];
	ssize_t n = pwt_read_full(fd, hb, sizeof(hb), timeout_ms);
	uint8_t *out = payload;
	size_t left, kept = 0;

	if (n == 0)
		return 0;
	if (n < 0)
		return (int)n;
	if (n != (ssize_t)sizeof(hb)) {
		fprintf(stderr, "pwraw: EOF after %zd header bytes\n", n);
		return -EBADMSG;
	}
	n = pw_wire_decode_hdr(hb, sizeof(hb), h);
	if (n < 0) {
		fprintf(stderr, "pwraw: undecodable header (%s): opcode 0x%02x\n",
			pwt_strerr((int)n), hb[3]);
		return -EBADMSG;
	}
	left = h->payload_len;
	while (left) {
		uint8_t sink[4096];
		uint8_t *dst = sink;
		size_t chunk = left < sizeof(sink) ? left : sizeof(sink);

		if (kept < cap) {
			dst = out + kept;
			if (chunk > cap - kept)
				chunk = cap - kept;
		}
		n = pwt_read_full(fd, dst, chunk, timeout_ms);
		if (n < 0)
			return (int)n;
		if (n != (ssize_t)chunk) {
			fprintf(stderr, "pwraw: EOF inside a %s payload\n",
				pw_wire_op_name(h->opcode));
			return -EBADMSG;
		}
		if (dst != sink)
			kept += chunk;
		left -= chunk;
	}
	if (payload_len)
		*payload_len = kept;
	return 1;
}

int pwr_open_accepted(struct pw_listener *l, struct pwt_side *b,
		      struct pw_qp **qp, uint32_t psn, uint32_t qpn, int nrecv)
{
	struct pw_qp_init_attr attr;
	struct pw_conn_param param = { .timeout_ms = PWT_TIMEOUT_MS };
	uint8_t payload[PW_WIRE_CONN_FIXED_LEN + PW_WIRE_MAX_PDATA];
	struct pw_wire_conn c;
	struct pw_hdr h;
	size_t plen = 0;
	int fd, rc;

	fd = pwt_tcp_connect(pw_listener_port(l));
	/* The kernel queues the request until pw_accept reads it, so one
	 * thread can play both sides. */
	pwr_send_connect_req(fd, psn, qpn, NULL, 0);

	memset(&attr, 0, sizeof(attr));
	attr.send_cq = b->scq;
	attr.recv_cq = b->rcq;
	*qp = pw_accept(l, b->pd, &attr, &param);
	PWT_NONNULL(*qp);
	PWT_EQ((*qp)->dest_qp_num, qpn);
	PWT_EQ(pw_qp_state(*qp), PW_QPS_RTS);

	rc = pwr_read_msg(fd, &h, payload, sizeof(payload), &plen, PWT_TIMEOUT_MS);
	PWT_ASSERTF(rc == 1, "reading CONNECT_REP: %d (%s)", rc, pwt_strerr(rc));
	PWT_EQ(h.opcode, PW_OP_CONNECT_REP);
	PWT_EQ(plen, h.payload_len);
	PWT_OK(pw_wire_decode_conn(payload, plen, &c));
	PWT_ASSERT(c.min_version <= PW_WIRE_VERSION &&
		   c.max_version >= PW_WIRE_VERSION);
	PWT_EQ(c.qpn, (*qp)->qp_num);
	PWT_EQ(c.reason, 0);

	for (int i = 0; i < nrecv; i++)
		PWT_OK(pwt_post_recv1(*qp, 0x100u + (unsigned int)i, NULL, 0, 0));
	return fd;
}
