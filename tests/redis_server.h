/* A private redis-server for tests and benchmarks: on a free loopback port
 * (never 6379), no persistence, killed when the process that started it
 * dies. No Check dependency, so the benchmarks use it too. */
#ifndef REVTUN_REDIS_SERVER_H
#define REVTUN_REDIS_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct rs_server {
  pid_t pid;
  int port;
};

bool rs_available(void); /* redis-server is on PATH */
/* Starts redis-server on port (0: a free one) and waits until it answers
 * PING; 0 on success, else -1 with a sentence in err. */
int rs_start(struct rs_server *s, int port, char *err, size_t errlen);
void rs_kill(struct rs_server *s); /* SIGKILL, waited for */

#endif
