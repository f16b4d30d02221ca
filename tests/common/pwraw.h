/* SPDX-License-Identifier: MIT */
/*
 * pwraw - speak wire protocol v1 (src/wire/wire.h) by hand over a raw TCP
 * socket, to feed a pagewire endpoint well-formed or malformed messages.
 */
#ifndef PWRAW_H
#define PWRAW_H

#include <stddef.h>
#include <stdint.h>

#include "wire/wire.h"
#include "pwtest.h"

/* A header with only @opcode, @psn and the version set. */
struct pw_hdr pwr_hdr(uint8_t opcode, uint32_t psn);

/* Encodes @h and writes the 48-byte header. */
void pwr_send_hdr(int fd, const struct pw_hdr *h);

/* Sends CONNECT_REQ with @psn, @qpn and private data. */
void pwr_send_connect_req(int fd, uint32_t psn, uint32_t qpn,
			  const void *pdata, uint16_t pdata_len);
/* Sends CONNECT_REP or CONNECT_REJ (server side of a fake peer). */
void pwr_send_conn_msg(int fd, uint8_t opcode, uint32_t psn,
		       const struct pw_wire_conn *c);

/*
 * Reads one message. Returns 1 with *h decoded and the payload (up to
 * @cap bytes kept, the rest discarded) in @payload; 0 on a clean EOF at a
 * message boundary; -ECONNRESET / -ETIMEDOUT / another negative errno;
 * -EBADMSG when the bytes are not a valid v1 message (header decode
 * failed or EOF in the middle of a message).
 */
int pwr_read_msg(int fd, struct pw_hdr *h, void *payload, size_t cap,
		 size_t *payload_len, int timeout_ms);

/*
 * Opens a raw connection to @l and has @b accept it: CONNECT_REQ is sent
 * before pw_accept() runs (the kernel queues it), then the CONNECT_REP is
 * read and checked. Returns the socket; *qp is the accepted QP (in b's PD
 * and CQs), with @nrecv zero-length receives posted (wr_id 0x100 + i).
 */
int pwr_open_accepted(struct pw_listener *l, struct pwt_side *b,
		      struct pw_qp **qp, uint32_t psn, uint32_t qpn, int nrecv);

#endif /* PWRAW_H */
