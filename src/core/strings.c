/* SPDX-License-Identifier: MIT */
/* Status and opcode names, worded as ibv_wc_status_str() words them. */
#include <pagewire/pagewire.h>

const char *pw_wc_status_str(enum pw_wc_status status)
{
	static const char *const names[] = {
		[PW_WC_SUCCESS] = "success",
		[PW_WC_LOC_LEN_ERR] = "local length error",
		[PW_WC_LOC_QP_OP_ERR] = "local QP operation error",
		[PW_WC_LOC_PROT_ERR] = "local protection error",
		[PW_WC_WR_FLUSH_ERR] = "Work Request Flushed Error",
		[PW_WC_REM_INV_REQ_ERR] = "remote invalid request error",
		[PW_WC_REM_ACCESS_ERR] = "remote access error",
		[PW_WC_REM_OP_ERR] = "remote operation error",
		[PW_WC_RETRY_EXC_ERR] = "transport retry counter exceeded",
		[PW_WC_RNR_RETRY_EXC_ERR] = "RNR retry counter exceeded",
		[PW_WC_FATAL_ERR] = "fatal error",
		[PW_WC_GENERAL_ERR] = "general error",
	};

	if ((unsigned int)status < sizeof(names) / sizeof(names[0]) &&
	    names[status])
		return names[status];
	return "unknown";
}

const char *pw_wr_opcode_str(enum pw_wr_opcode opcode)
{
	static const char *const names[] = {
		[PW_WR_RDMA_WRITE] = "RDMA_WRITE",
		[PW_WR_RDMA_WRITE_WITH_IMM] = "RDMA_WRITE_WITH_IMM",
		[PW_WR_SEND] = "SEND",
		[PW_WR_SEND_WITH_IMM] = "SEND_WITH_IMM",
		[PW_WR_RDMA_READ] = "RDMA_READ",
		[PW_WR_ATOMIC_CMP_AND_SWP] = "ATOMIC_CMP_AND_SWP",
		[PW_WR_ATOMIC_FETCH_AND_ADD] = "ATOMIC_FETCH_AND_ADD",
	};

	if ((unsigned int)opcode < sizeof(names) / sizeof(names[0]))
		return names[opcode];
	return "unknown";
}
