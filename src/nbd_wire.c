/*
 * nbd_wire.c - whole messages over the NBD client's socket: every byte or
 * an error, whatever the kernel does with signals and short transfers.
 *
 * A peer that has gone away shows up as -EPIPE or -ECONNRESET, never as
 * SIGPIPE: a writeback thread must get an error it can handle, not kill
 * the program. Sends use MSG_NOSIGNAL for that, so the fd must be a socket.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "nbd_proto.h"

int nbd_send_all(int fd, const void *a, size_t alen, const void *b, size_t blen)
{
	/* Two pieces (a header and its payload) go in one sendmsg: one syscall, no Nagle gap between them. */
	struct iovec iov[2] = { { (void *)a, alen }, { (void *)b, blen } };
	struct iovec *next = iov;
	int left = blen ? 2 : 1;
	while (left > 0) {
		if (next->iov_len == 0) {
			next++;
			left--;
			continue;
		}
		struct msghdr msg = { .msg_iov = next, .msg_iovlen = (size_t)left };
		ssize_t sent = sendmsg(fd, &msg, MSG_NOSIGNAL);
		if (sent < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		/* A short send: step over what went, possibly into the second piece. */
		size_t done = (size_t)sent;
		while (left > 0 && done >= next->iov_len) {
			done -= next->iov_len;
			next++;
			left--;
		}
		if (left > 0) {
			next->iov_base = (char *)next->iov_base + done;
			next->iov_len -= done;
		}
	}
	return 0;
}

int nbd_recv_all(int fd, void *buf, size_t len, size_t *got)
{
	size_t have = 0;
	int rc = 0;
	while (have < len) {
		ssize_t n = recv(fd, (char *)buf + have, len - have, 0);
		if (n > 0) {
			have += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		/* An orderly close reads as a reset: either way the peer is gone. */
		rc = n == 0 ? -ECONNRESET : -errno;
		break;
	}
	if (got)
		*got = have;
	return rc;
}
