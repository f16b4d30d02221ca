#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Generate the seed corpus for tests/fuzz/fuzz_wire.c.

The files are committed. Rerun this script after a change to the wire
format and commit the result:

    python3 tests/fuzz/gen_corpus.py

The encoder below follows docs/wire.md and shares no code with
src/wire/wire.c, so the corpus also cross-checks the C codec.

File names carry expectations, which the replay driver checks:
  ok-*         a stream of complete, valid messages
  bad-CODE-*   the stream parse fails with -CODE
  raw-*        no expectation (bare connection payloads or trailers, fed to
               those decoders directly)
"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "wire")

OP = {
    "CONNECT_REQ": 0x01, "CONNECT_REP": 0x02, "CONNECT_REJ": 0x03,
    "WRITE": 0x10, "WRITE_IMM": 0x11, "SEND": 0x12, "SEND_IMM": 0x13,
    "READ_REQ": 0x14, "ATOMIC_CS": 0x15, "ATOMIC_FA": 0x16,
    "ACK": 0x20, "NAK": 0x21, "READ_RESP": 0x22, "ATOMIC_RESP": 0x23,
    "CONNECT_RTU": 0x04, "HEARTBEAT": 0x40, "DISCONNECT": 0x41,
}
HB_PING, HB_PONG = 1, 2
ACK_REQ, SOLICITED = 0x1, 0x2
SYN = {"OK": 0, "RNR": 1, "PSN_SEQ": 2, "INVALID_REQ": 3,
       "REMOTE_ACCESS": 4, "REMOTE_OP": 5, "PAGE_FAULT": 6}

# The 48-byte header, little-endian:
# magic0 magic1 version opcode flags reserved psn rkey raddr payload_len
# imm op1 op2
HDR = struct.Struct("<BBBBHHIIQIIQQ")
assert HDR.size == 48
# Fixed part of the connection payload.
CONN = struct.Struct("<HHIIIIIIHH")
assert CONN.size == 32


def hdr(op, payload_len=0, flags=0, psn=0, rkey=0, raddr=0, imm=0, op1=0,
        op2=0, magic=(0x50, 0x57), version=1, reserved=0):
    return HDR.pack(magic[0], magic[1], version, op, flags, reserved, psn,
                    rkey, raddr, payload_len, imm, op1, op2)


def conn(pdata=b"", min_version=1, max_version=1, features=0, qpn=7,
         max_rd_atomic=16, max_dest_rd_atomic=16, reason=0, rsv0=0, rsv1=0,
         pdata_len=None):
    if pdata_len is None:
        pdata_len = len(pdata)
    return CONN.pack(min_version, max_version, features, qpn, max_rd_atomic,
                     max_dest_rd_atomic, reason, rsv0, pdata_len,
                     rsv1) + pdata


def trailer(syndrome=0, reserved=0):
    return struct.pack("<II", syndrome, reserved)


def cm(op, payload, psn=0):
    return hdr(OP[op], len(payload), psn=psn) + payload


def read_resp(data, syn=0, psn=0):
    return hdr(OP["READ_RESP"], len(data) + 8, psn=psn) + data + trailer(syn)


def corpus():
    f = {}
    # --- every opcode, valid ------------------------------------------
    f["ok-connect_req-pdata"] = cm("CONNECT_REQ", conn(b"hello pagewire"),
                                   psn=0x12345678)
    f["ok-connect_req-nopdata"] = cm("CONNECT_REQ", conn(), psn=1)
    f["ok-connect_req-pdata256"] = cm("CONNECT_REQ",
                                      conn(bytes(range(256))), psn=2)
    f["ok-connect_req-v1to3"] = cm("CONNECT_REQ",
                                   conn(b"x", max_version=3, features=5))
    f["ok-connect_rep"] = cm("CONNECT_REP", conn(b"welcome", qpn=9),
                             psn=0xfffffff0)
    f["ok-connect_rej"] = cm("CONNECT_REJ", conn(reason=111))
    f["ok-write-8"] = hdr(OP["WRITE"], 8, ACK_REQ, 100, 0x1a2b3c4d,
                          0x00007f3a12345000) + b"pagewire"
    f["ok-write-0"] = hdr(OP["WRITE"], 0, 0, 7, 0, 0)
    f["ok-write_imm"] = hdr(OP["WRITE_IMM"], 4, ACK_REQ | SOLICITED, 8,
                            0x55, 0x1000, imm=0xdeadbeef) + b"abcd"
    f["ok-send"] = hdr(OP["SEND"], 5, ACK_REQ, 9) + b"hello"
    f["ok-send_imm"] = hdr(OP["SEND_IMM"], 3, SOLICITED, 10,
                           imm=42) + b"xyz"
    f["ok-read_req"] = hdr(OP["READ_REQ"], 0, ACK_REQ, 11, 0x77, 0x2000,
                           imm=4096)
    f["ok-read_req-max"] = hdr(OP["READ_REQ"], 0, 0, 12, 0x77, 0,
                               imm=1 << 31)
    f["ok-atomic_cs"] = hdr(OP["ATOMIC_CS"], 0, ACK_REQ, 13, 0x88, 0x3008,
                            op1=1, op2=2)
    f["ok-atomic_fa"] = hdr(OP["ATOMIC_FA"], 0, ACK_REQ, 14, 0x88, 0x3010,
                            op1=0xffffffffffffffff)
    f["ok-ack"] = hdr(OP["ACK"], psn=100)
    for name, val in SYN.items():
        if val:
            f["ok-nak-" + name.lower()] = hdr(
                OP["NAK"], psn=101, imm=val,
                op1=200 if name in ("RNR", "PAGE_FAULT") else 0)
    f["ok-read_resp-16"] = read_resp(bytes(range(16)), psn=11)
    f["ok-read_resp-0"] = read_resp(b"", psn=12)
    f["ok-read_resp-access"] = read_resp(b"\0" * 16, SYN["REMOTE_ACCESS"])
    f["ok-atomic_resp"] = hdr(OP["ATOMIC_RESP"], psn=13, op1=0x1122334455)
    # A stream: what one connection carries after the handshake.
    f["ok-stream-mixed"] = (f["ok-write-8"] + f["ok-write_imm"] +
                            f["ok-read_req"] + f["ok-ack"] +
                            f["ok-read_resp-16"] + f["ok-atomic_resp"] +
                            f["ok-nak-rnr"])
    f["ok-stream-handshake"] = f["ok-connect_req-pdata"] + f["ok-connect_rep"]
    # link messages (feature LINK): RTU, heartbeats, disconnect
    f["ok-connect_rtu"] = hdr(OP["CONNECT_RTU"])
    f["ok-heartbeat"] = hdr(OP["HEARTBEAT"])
    f["ok-heartbeat-ping"] = hdr(OP["HEARTBEAT"], psn=41, imm=HB_PING)
    f["ok-heartbeat-pong"] = hdr(OP["HEARTBEAT"], psn=41, imm=HB_PONG)
    f["ok-disconnect"] = hdr(OP["DISCONNECT"])
    f["ok-stream-link"] = (f["ok-stream-handshake"] + f["ok-connect_rtu"] +
                           f["ok-write-8"] + f["ok-heartbeat-ping"] +
                           f["ok-heartbeat-pong"] + f["ok-ack"] +
                           f["ok-disconnect"])

    # --- invalid headers ----------------------------------------------
    f["bad-ENODATA-short-hdr"] = f["ok-ack"][:20]
    f["bad-ENODATA-47"] = f["ok-ack"][:47]
    f["bad-ENODATA-payload-cut"] = f["ok-write-8"][:51]
    f["bad-ENODATA-write-max"] = hdr(OP["WRITE"], 1 << 31)
    f["bad-ENODATA-stream-cut"] = f["ok-stream-mixed"][:-3]
    f["bad-EPROTO-magic0"] = hdr(OP["ACK"], magic=(0x51, 0x57))
    f["bad-EPROTO-magic-swapped"] = hdr(OP["ACK"], magic=(0x57, 0x50))
    f["bad-EPROTO-version0"] = hdr(OP["ACK"], version=0)
    f["bad-EPROTO-version2"] = hdr(OP["ACK"], version=2)
    f["bad-EBADMSG-opcode-00"] = hdr(0x00)
    f["bad-EBADMSG-opcode-17"] = hdr(0x17)
    f["bad-EBADMSG-opcode-24"] = hdr(0x24)
    f["bad-EBADMSG-opcode-ff"] = hdr(0xff)
    f["bad-EBADMSG-flags"] = hdr(OP["WRITE"], flags=0x4)
    f["bad-EBADMSG-reserved"] = hdr(OP["ACK"], reserved=0x100)
    f["bad-EBADMSG-nak-syn0"] = hdr(OP["NAK"], imm=0)
    f["bad-EBADMSG-nak-syn7"] = hdr(OP["NAK"], imm=7)
    f["bad-EMSGSIZE-write-2g1"] = hdr(OP["WRITE"], (1 << 31) + 1)
    f["bad-EMSGSIZE-ack-payload"] = hdr(OP["ACK"], 1) + b"\0"
    f["bad-EMSGSIZE-read_len"] = hdr(OP["READ_REQ"], imm=(1 << 31) + 1)
    f["bad-EMSGSIZE-read_resp-7"] = hdr(OP["READ_RESP"], 7) + b"\0" * 7
    f["bad-EMSGSIZE-connect-289"] = hdr(OP["CONNECT_REQ"], 289)
    f["bad-EMSGSIZE-connect-31"] = hdr(OP["CONNECT_REQ"], 31) + b"\0" * 31
    f["bad-EBADMSG-second-msg"] = f["ok-write-8"] + hdr(0x30)
    f["bad-EBADMSG-opcode-33"] = hdr(0x33)
    f["bad-EBADMSG-opcode-42"] = hdr(0x42)
    f["bad-EBADMSG-heartbeat-both"] = hdr(OP["HEARTBEAT"], imm=HB_PING | HB_PONG)
    f["bad-EMSGSIZE-rtu-payload"] = hdr(OP["CONNECT_RTU"], 32) + b"\0" * 32
    f["bad-EMSGSIZE-heartbeat-payload"] = hdr(OP["HEARTBEAT"], 1) + b"\0"

    # --- invalid payloads behind a valid header -----------------------
    f["bad-EMSGSIZE-conn-pdata-mismatch"] = cm(
        "CONNECT_REQ", conn(b"0123456789", pdata_len=12))
    # 288 bytes, so the header is fine, but pdata_len claims 257.
    f["bad-EMSGSIZE-conn-pdata-257"] = cm(
        "CONNECT_REQ", conn(b"\0" * 256, pdata_len=257))
    f["bad-EBADMSG-conn-reserved"] = cm("CONNECT_REP", conn(rsv0=1))
    f["bad-EBADMSG-conn-reserved2"] = cm("CONNECT_REP", conn(rsv1=0x8000))
    f["bad-EBADMSG-conn-minmax"] = cm("CONNECT_REQ",
                                      conn(min_version=2, max_version=1))
    f["bad-EBADMSG-conn-min0"] = cm("CONNECT_REQ", conn(min_version=0))
    f["bad-EBADMSG-trailer-syn7"] = read_resp(b"abcd", syn=7)
    f["bad-EBADMSG-trailer-reserved"] = (
        hdr(OP["READ_RESP"], 12) + b"abcd" + trailer(0, 1))

    # --- bare payloads for decode_conn / decode_trailer ---------------
    f["raw-conn-pdata"] = conn(b"private")
    f["raw-conn-empty"] = conn()
    f["raw-conn-short"] = conn()[:31]
    f["raw-conn-pdata256"] = conn(b"\xaa" * 256)
    # Length agrees with pdata_len, but 257 is over the limit.
    f["raw-conn-pdata257"] = conn(b"\xbb" * 257)
    f["raw-trailer-ok"] = trailer(0)
    f["raw-trailer-access"] = trailer(4)
    f["raw-trailer-bad"] = trailer(7)
    return f


def main():
    os.makedirs(OUT, exist_ok=True)
    for old in os.listdir(OUT):
        if old.endswith(".bin"):
            os.unlink(os.path.join(OUT, old))
    files = corpus()
    for name, data in sorted(files.items()):
        with open(os.path.join(OUT, name + ".bin"), "wb") as fh:
            fh.write(data)
    print("wrote %d files to %s" % (len(files), os.path.relpath(OUT)),
          file=sys.stderr)


if __name__ == "__main__":
    main()
