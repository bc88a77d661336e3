/* The acceptor's transport seam as the acceptor keeps it: the callbacks of a
 * session layer (TLS in practice) and their user pointer. */
#ifndef REVTUN_ACCEPTOR_TRANSPORT_H
#define REVTUN_ACCEPTOR_TRANSPORT_H

#include <stdbool.h>

#include "revtun/transport.h"

struct revtun_transport {
  void *user;
  revtun_tp_open_fn open;
  revtun_tp_close_fn close;
  revtun_tp_handshake_fn handshake;
  revtun_tp_read_fn read;
  revtun_tp_write_fn write;
  revtun_tp_park_fn park;
  revtun_tp_failure_fn failure; /* optional */
  revtun_tp_peer_fn peer;       /* optional */
};

/* Every callback a session needs is set. */
bool rt_transport_complete(const revtun_transport_t *t);

#endif
