/* A socket address of any family the library prints (IPv4, IPv6), with its
 * length; 0 when unknown. */
#ifndef REVTUN_BASE_SOCKADDR_H
#define REVTUN_BASE_SOCKADDR_H

#include <netinet/in.h>
#include <sys/socket.h>

struct rt_addr {
  socklen_t len; /* 0 when unknown */
  union {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
  } u;
};

/* The local and peer addresses of a connected socket. An address that
 * cannot be read, or does not fit (AF_UNIX paths), is left unknown. */
void rt_addr_of_socket(int fd, struct rt_addr *local, struct rt_addr *remote);

#endif
