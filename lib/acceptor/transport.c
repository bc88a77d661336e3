/* revtun_transport_t: a plain container of session callbacks. The acceptor
 * copies it (revtun_acceptor_set_transport), so the object may be freed once
 * it has been set; the user pointer it carries must live on. It comes from
 * the default allocator, like revtun_options_new's object: it exists before
 * any handle. */
#include "acceptor/transport.h"
#include "base/mem.h"

int revtun_transport_new(revtun_transport_t **out, void *tp_user) {
  if (!out)
    return REVTUN_E_INVAL;
  struct rt_mem m;
  rt_mem_default(&m);
  revtun_transport_t *t = rt_calloc(&m, 1, sizeof(*t));
  *out = t;
  if (!t)
    return REVTUN_E_NOMEM;
  t->user = tp_user;
  return REVTUN_OK;
}

void revtun_transport_free(revtun_transport_t *t) {
  struct rt_mem m;
  rt_mem_default(&m);
  rt_free(&m, t);
}

int revtun_transport_set_session(revtun_transport_t *t, revtun_tp_open_fn open,
                                 revtun_tp_close_fn close) {
  if (!t || !open || !close)
    return REVTUN_E_INVAL;
  t->open = open;
  t->close = close;
  return REVTUN_OK;
}

int revtun_transport_set_io(revtun_transport_t *t, revtun_tp_handshake_fn handshake,
                            revtun_tp_read_fn read, revtun_tp_write_fn write,
                            revtun_tp_park_fn park) {
  if (!t || !handshake || !read || !write || !park)
    return REVTUN_E_INVAL;
  t->handshake = handshake;
  t->read = read;
  t->write = write;
  t->park = park;
  return REVTUN_OK;
}

int revtun_transport_set_diagnostics(revtun_transport_t *t, revtun_tp_failure_fn failure,
                                     revtun_tp_peer_fn peer) {
  if (!t)
    return REVTUN_E_INVAL;
  t->failure = failure;
  t->peer = peer;
  return REVTUN_OK;
}

bool rt_transport_complete(const revtun_transport_t *t) {
  return t && t->open && t->close && t->handshake && t->read && t->write && t->park;
}
