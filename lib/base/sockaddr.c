/* See sockaddr.h. */
#include "base/sockaddr.h"

void rt_addr_of_socket(int fd, struct rt_addr *local, struct rt_addr *remote) {
  local->len = sizeof(local->u);
  if (getsockname(fd, &local->u.sa, &local->len) || local->len > sizeof(local->u))
    local->len = 0;
  remote->len = sizeof(remote->u);
  if (getpeername(fd, &remote->u.sa, &remote->len) || remote->len > sizeof(remote->u))
    remote->len = 0;
}
