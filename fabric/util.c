/* SPDX-License-Identifier: MIT */
/* Error mapping and the functions for ops the provider does not support. */
#include <errno.h>

#include "pwf.h"

int pwf_errno(int neg_errno)
{
	switch (-neg_errno) {
	case 0:		return 0;
	case EAGAIN:	return -FI_EAGAIN;
	case ENOMEM:	return -FI_ENOMEM;
	case EINVAL:	return -FI_EINVAL;
	case EBUSY:	return -FI_EBUSY;
	case ETIMEDOUT:	return -FI_ETIMEDOUT;
	case ECONNREFUSED: return -FI_ECONNREFUSED;
	case ECONNRESET: return -FI_ECONNRESET;
	case ECONNABORTED: return -FI_ECONNABORTED;
	case EHOSTUNREACH: return -FI_EHOSTUNREACH;
	case ENOTCONN:	return -FI_ENOTCONN;
	case EACCES:	return -FI_EACCES;
	case EFAULT:	return -FI_EFAULT;
	case EMFILE:	return -FI_EMFILE;
	case ENOSYS:	return -FI_ENOSYS;
	case EOPNOTSUPP: return -FI_EOPNOTSUPP;
	case EPROTO:	return -FI_EIO;
	case EADDRINUSE: return -FI_EADDRINUSE;
	case EADDRNOTAVAIL: return -FI_EADDRNOTAVAIL;
	default:	return -FI_EOTHER;
	}
}

int pwf_wc_err(enum pw_wc_status st)
{
	switch (st) {
	case PW_WC_SUCCESS:		return 0;
	case PW_WC_LOC_LEN_ERR:		return FI_ETRUNC;
	case PW_WC_LOC_QP_OP_ERR:	return FI_EINVAL;
	case PW_WC_LOC_PROT_ERR:	return FI_EACCES;
	case PW_WC_WR_FLUSH_ERR:	return FI_ECANCELED;
	case PW_WC_REM_INV_REQ_ERR:	return FI_EINVAL;
	case PW_WC_REM_ACCESS_ERR:	return FI_EACCES;
	case PW_WC_REM_OP_ERR:		return FI_EREMOTEIO;
	case PW_WC_RETRY_EXC_ERR:	return FI_ETIMEDOUT;
	case PW_WC_RNR_RETRY_EXC_ERR:	return FI_ENORX;
	case PW_WC_FATAL_ERR:		return FI_EIO;
	default:			return FI_EOTHER;
	}
}

int pwf_getwait(int command, enum fi_wait_obj wait_obj, int wait_fd, void *arg)
{
	/* libfabric's wait sets (ofi_rxm's, over our CQs and EQs) ask the kind first */
	if (command == FI_GETWAITOBJ) {
		*(enum fi_wait_obj *)arg = wait_obj;
		return 0;
	}
	if (command != FI_GETWAIT)
		return -FI_ENOSYS;
	if (wait_obj != FI_WAIT_FD)
		return -FI_ENODATA;
	*(int *)arg = wait_fd;
	return 0;
}

int pwf_no_bind(struct fid *fid, struct fid *bfid, uint64_t flags)
{
	return -FI_ENOSYS;
}

int pwf_no_control(struct fid *fid, int command, void *arg)
{
	return -FI_ENOSYS;
}

int pwf_no_ops_open(struct fid *fid, const char *name, uint64_t flags,
		    void **ops, void *context)
{
	return -FI_ENOSYS;
}

int pwf_no_tostr(const struct fid *fid, char *buf, size_t len)
{
	return -FI_ENOSYS;
}

int pwf_no_ops_set(struct fid *fid, const char *name, uint64_t flags,
		   void *ops, void *context)
{
	return -FI_ENOSYS;
}

static ssize_t no_trecv(struct fid_ep *ep, void *buf, size_t len, void *desc,
			fi_addr_t src, uint64_t tag, uint64_t ignore, void *ctx)
{
	return -FI_ENOSYS;
}

static ssize_t no_trecvv(struct fid_ep *ep, const struct iovec *iov, void **desc,
			 size_t count, fi_addr_t src, uint64_t tag,
			 uint64_t ignore, void *ctx)
{
	return -FI_ENOSYS;
}

static ssize_t no_trecvmsg(struct fid_ep *ep, const struct fi_msg_tagged *msg,
			   uint64_t flags)
{
	return -FI_ENOSYS;
}

static ssize_t no_tsend(struct fid_ep *ep, const void *buf, size_t len,
			void *desc, fi_addr_t dest, uint64_t tag, void *ctx)
{
	return -FI_ENOSYS;
}

static ssize_t no_tsendv(struct fid_ep *ep, const struct iovec *iov, void **desc,
			 size_t count, fi_addr_t dest, uint64_t tag, void *ctx)
{
	return -FI_ENOSYS;
}

static ssize_t no_tsendmsg(struct fid_ep *ep, const struct fi_msg_tagged *msg,
			   uint64_t flags)
{
	return -FI_ENOSYS;
}

static ssize_t no_tinject(struct fid_ep *ep, const void *buf, size_t len,
			  fi_addr_t dest, uint64_t tag)
{
	return -FI_ENOSYS;
}

static ssize_t no_tsenddata(struct fid_ep *ep, const void *buf, size_t len,
			    void *desc, uint64_t data, fi_addr_t dest,
			    uint64_t tag, void *ctx)
{
	return -FI_ENOSYS;
}

static ssize_t no_tinjectdata(struct fid_ep *ep, const void *buf, size_t len,
			      uint64_t data, fi_addr_t dest, uint64_t tag)
{
	return -FI_ENOSYS;
}

/* FI_TAGGED is not offered: MSG endpoints of this provider have no tags. */
struct fi_ops_tagged pwf_no_tagged_ops = {
	.size = sizeof(struct fi_ops_tagged),
	.recv = no_trecv,
	.recvv = no_trecvv,
	.recvmsg = no_trecvmsg,
	.send = no_tsend,
	.sendv = no_tsendv,
	.sendmsg = no_tsendmsg,
	.inject = no_tinject,
	.senddata = no_tsenddata,
	.injectdata = no_tinjectdata,
};
