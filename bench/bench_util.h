/* Shared helpers for the benchmarks: a monotonic clock, repetition summaries,
 * a byte-counting allocator for revtun_options_set_allocator(), the summary
 * line format scripts/bench collects, and the fake-fd syscall wrappers
 * (bench/fakefd.c) that let a pool hold more sockets than RLIMIT_NOFILE.
 *
 * Nothing here asserts on time: benchmarks report, they never fail on speed. */
#ifndef REVTUN_BENCH_UTIL_H
#define REVTUN_BENCH_UTIL_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <revtun/revtun.h>

/* ------------------------------------------------------------- timing */

uint64_t bu_now_ns(void); /* CLOCK_MONOTONIC */

struct bu_summary {
  double median, min, max;
  double spread; /* (max - min) / median */
  size_t n;
};

/* Summarises n samples (n >= 1); does not modify v. */
struct bu_summary bu_summarize(const double *v, size_t n);

/* --------------------------------------------------------- allocation */

/* Counts what the library asks for (requested bytes, live blocks). A 16-byte
 * header keeps the size of each block; the header is not counted. */
struct bu_alloc {
  size_t live_bytes, peak_bytes;
  size_t live_blocks;
  uint64_t calls;
};

void *bu_malloc(size_t n, void *user);
void *bu_realloc(void *p, size_t n, void *user);
void bu_free(void *p, void *user);

/* ------------------------------------------------------------- output */

/* Prints the run header (what, where, when). */
void bu_header(const char *bench, const char *what);

/* One summary row collected by scripts/bench:
 *   RESULT|bench|metric|value|unit|target|note
 * target is a human description ("<= 1.5") or "-" when there is none; note is
 * "within" / "over" for rows with a target and "info" otherwise. Printing a row
 * never changes the exit status. */
void bu_result(const char *bench, const char *metric, double value, const char *unit,
               const char *target, int within_target);
#define BU_INFO (-1)

/* Raises the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now
 * in force (what real-socket sizes must fit in). */
size_t bu_raise_nofile(void);

/* "1k", "9k", "100k", "1M", or the plain number; buf needs 24 bytes. */
const char *bu_size_name(size_t n, char *buf);

/* Decimal, NUL-terminated; buf needs 21 bytes. Returns the length. */
size_t bu_u64_dec(char *buf, uint64_t v);
int bu_host_io(revtun_t *h, int fd, int events, void *su, void *ud);
int bu_host_timer(revtun_t *h, int64_t ms, void *ud);
void bu_host_close(revtun_t *h, int fd, void *su, void *ud);

/* ------------------------------------------------------ fake sockets */

/* fds at or above this are fake, always-healthy sockets: the wrapped syscalls
 * below answer for them without entering the kernel. Real fds pass through. */
#define BU_FAKE_FD_BASE (1 << 20)

struct bu_fake_counts {
  uint64_t fcntl, getsockname, getpeername, recv, send, close, shutdown, poll;
};
extern struct bu_fake_counts bu_fake; /* calls that were answered for fake fds */

/* The -Wl,--wrap=... targets (see bench/local.mk). */
int __wrap_fcntl(int fd, int cmd, ...);
int __wrap_fcntl64(int fd, int cmd, ...);
int __wrap_getsockname(int fd, struct sockaddr *sa, socklen_t *len);
int __wrap_getpeername(int fd, struct sockaddr *sa, socklen_t *len);
int __wrap_close(int fd);
int __wrap_shutdown(int fd, int how);
ssize_t __wrap_recv(int fd, void *buf, size_t n, int flags);
ssize_t __wrap___recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags);
ssize_t __wrap_send(int fd, const void *buf, size_t n, int flags);
int __wrap_poll(struct pollfd *fds, nfds_t n, int timeout);

/* Registers one fake socket in a scratch handle, hands it off and marks it
 * dead, and checks that every syscall on the way reached the wrappers (a
 * fortified or redirected call would bypass them and measure nothing).
 * Prints the reason and returns -1 if not. */
int bu_fake_selfcheck(void);

#endif
