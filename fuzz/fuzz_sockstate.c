/* libFuzzer harness: the state of a moved socket (pool/sockstate.h), the
 * bytes revtun_import_socket() takes from another handle or process. The
 * decoder must accept exactly the canonical encodings (what it accepts
 * re-encodes to the same bytes, and its strings lie inside the input), and
 * the public import over a real socketpair must agree with it: a refused
 * state leaves the fd open, the caller's and unregistered; an accepted one
 * is parked under the ids it names and exports back to the same bytes. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <revtun/revtun.h>

#include "pool/sockstate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_span(struct rt_span s, const uint8_t *data, size_t size) {
  if (s.n && ((const uint8_t *)s.p < data || (const uint8_t *)s.p + s.n > data + size))
    abort();
  if (s.n > RT_MAX_ID_LEN || (s.n && memchr(s.p, '\0', s.n)))
    abort();
}

static bool span_is(struct rt_span s, const char *str) {
  return strlen(str) == s.n && (!s.n || memcmp(s.p, str, s.n) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static uint8_t again[RT_SOCKSTATE_MAX];
  struct rt_sockstate st;
  const char *why = NULL;
  int drc = rt_sockstate_decode(data, size, &st, &why);
  if (drc == REVTUN_OK) {
    check_span(st.node, data, size);
    check_span(st.cluster, data, size);
    check_span(st.tenant, data, size);
    check_span(st.init_worker, data, size);
    check_span(st.init_conn, data, size);
    if (!st.node.n || !st.cluster.n || size > REVTUN_SOCKET_STATE_MAX)
      abort();
    if (rt_sockstate_size(&st) != size || rt_sockstate_encode(&st, again, sizeof(again)) != size ||
        memcmp(again, data, size) != 0)
      abort(); /* not canonical */
  } else if ((drc != REVTUN_E_INVAL && drc != REVTUN_E_UNSUPPORTED) || !why) {
    abort();
  }

  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
    return 0;
  revtun_t *h;
  if (revtun_new(&h, NULL, 0, NULL, 0, NULL, 0))
    abort();
  int fl = fcntl(sv[0], F_GETFL);
  int rc = revtun_import_socket(h, sv[0], data, size, NULL, 1);
  if (rc != drc)
    abort(); /* without isolation every decoded state is importable */
  if (rc != REVTUN_OK) {
    if (fcntl(sv[0], F_GETFL) != fl || revtun_socket_state(h, sv[0]) >= 0)
      abort();
  } else {
    const char *n, *c, *t;
    if (revtun_socket_identity(h, sv[0], &n, &c, &t) != REVTUN_OK || !span_is(st.node, n) ||
        !span_is(st.cluster, c) || !span_is(st.tenant, t ? t : ""))
      abort();
    size_t len = 0;
    if (revtun_export_socket(h, sv[0], 1, again, sizeof(again), &len, NULL) != REVTUN_OK ||
        len != size || memcmp(again, data, size) != 0)
      abort(); /* the move lost or changed something */
  }
  revtun_free(h);
  close(sv[0]);
  close(sv[1]);
  return 0;
}
