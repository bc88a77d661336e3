/* libFuzzer harness for the decoder of the proxy's restart handover
 * messages (examples/proxy/handover_wire.c): what another process sends
 * over --handover-socket.
 *
 * The first input byte is the number of descriptors the message "came
 * with" (0..HO_MAX_FDS + 1); the rest is the message. Besides "no crash,
 * no out-of-bounds read", it checks what handover.c relies on:
 *   - a decoded TUNNELS message has exactly as many states as descriptors,
 *     each 1..HO_MAX_STATE bytes and inside the message, back to back;
 *   - a decoded LISTENERS message names as many distinct known listeners
 *     as it has descriptors;
 *   - every other message came with no descriptors;
 *   - a REFUSE reason lies inside the message and is 1..HO_MAX_REASON bytes;
 *   - a rejection says why; a header re-encoded for the same type and
 *     payload length is the input's header (for the version we speak). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/handover_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok) {
  if (!ok)
    abort();
}

static int inside(const uint8_t *p, size_t n, const uint8_t *buf, size_t len) {
  return p >= buf && n <= len && (size_t)(p - buf) <= len - n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct ho_msg m;
  const char *why = NULL;
  size_t nfds, len;
  uint8_t *buf;
  int rc;

  if (size < 1)
    return 0;
  nfds = data[0] % (HO_MAX_MSG_FDS + 2);
  len = size - 1;
  /* a copy of exactly len bytes, so that a read past it is caught */
  if (!(buf = malloc(len ? len : 1)))
    return 0;
  memcpy(buf, data + 1, len);
  rc = ho_decode(buf, len, nfds, &m, &why);
  if (rc != HO_OK) {
    check(why != NULL);
    check(rc == HO_BAD || (rc == HO_BAD_VERSION && m.version != HO_VERSION));
    free(buf);
    return 0;
  }
  check(len >= HO_HEADER && len <= HO_MAX_MESSAGE && m.version == HO_VERSION);
  {
    uint8_t hdr[HO_HEADER];
    check(ho_header(hdr, m.type, (uint32_t)(len - HO_HEADER)) == len);
    check(memcmp(hdr, buf, HO_HEADER) == 0);
  }
  switch (m.type) {
  case HO_TUNNELS: {
    const uint8_t *next = buf + HO_HEADER + 2;
    check(m.n == nfds && m.n >= 1 && m.n <= HO_MAX_FDS);
    for (size_t i = 0; i < m.n; i++) {
      check(m.state_len[i] >= 1 && m.state_len[i] <= HO_MAX_STATE);
      check(m.state[i] == next + 2);
      check(inside(m.state[i], m.state_len[i], buf, len));
      next = m.state[i] + m.state_len[i];
    }
    check(next == buf + len);
    break;
  }
  case HO_LISTENERS: {
    unsigned count[HO_L_MAX + 1] = {0};
    check(m.n == nfds && m.n >= 1 && m.n <= HO_MAX_LISTENERS && len == HO_HEADER + 1 + m.n);
    for (size_t i = 0; i < m.n; i++) {
      check(m.kinds[i] >= HO_L_TUNNEL && m.kinds[i] <= HO_L_MAX);
      check(m.kinds[i] == buf[HO_HEADER + 1 + i]);
      count[m.kinds[i]]++;
    }
    check(count[HO_L_ADMIN] <= 1 && count[HO_L_TUNNEL] == count[HO_L_CLIENT]);
    check(m.workers == count[HO_L_TUNNEL] && m.workers >= 1 && m.workers <= HO_MAX_WORKERS);
    break;
  }
  case HO_REFUSE:
    check(nfds == 0 && m.reason_len >= 1 && m.reason_len <= HO_MAX_REASON);
    check(inside(m.reason, m.reason_len, buf, len));
    break;
  case HO_HELLO:
  case HO_SERVING: check(nfds == 0 && len == HO_HEADER); break;
  case HO_DONE: check(nfds == 0 && len == HO_HEADER + 4); break;
  default: check(0);
  }
  free(buf);
  return 0;
}
