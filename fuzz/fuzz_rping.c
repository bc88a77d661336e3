/* libFuzzer harness: the RPING stream. The input is split into reads (first
 * byte of each chunk gives its length) and fed both to an idle pool socket
 * over a real socketpair and to the post-handoff strip helper; the two must
 * agree on what is an echo, and the strip helper must never lose or invent
 * application bytes. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <revtun/revtun.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct outcome {
  int closed;
  int reason;
};

static void on_event(revtun_t *h, const revtun_event_t *ev, void *user) {
  (void)h;
  struct outcome *o = user;
  if (revtun_event_kind(ev) == REVTUN_EV_TUNNEL_CLOSED) {
    o->closed = 1;
    o->reason = revtun_event_close_reason(ev);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
    return 0;
  struct outcome out = {0, 0};
  revtun_options_t *o;
  if (revtun_options_new(&o))
    abort();
  revtun_options_set_access_log_cb(o, on_event);
  revtun_options_set_user_data(o, &out);
  revtun_t *h;
  if (revtun_new(&h, NULL, 0, o, 0, NULL, 0))
    abort();
  revtun_options_free(o);
  revtun_reg_t *reg;
  if (revtun_reg_new(h, &reg))
    abort();
  revtun_reg_set_ids(reg, "n", "c", NULL);
  if (revtun_register_socket(h, sv[0], reg, 0))
    abort();
  revtun_reg_free(reg);

  revtun_strip_t st = 0;
  uint8_t *app = malloc(size + 8); /* application bytes the strip helper let through */
  size_t app_len = 0, pos = 0, stripped = 0;
  int strip_rc = REVTUN_OK;
  uint64_t now = 1;
  while (pos < size && !out.closed) {
    size_t chunk = (size_t)data[pos++] % 64 + 1;
    if (chunk > size - pos)
      chunk = size - pos;
    if (chunk == 0)
      break;
    if (send(sv[1], data + pos, chunk, MSG_DONTWAIT) != (ssize_t)chunk)
      break;
    revtun_process_io(h, sv[0], REVTUN_IO_READ, now++);
    if (strip_rc == REVTUN_OK) {
      size_t olen, np;
      strip_rc = revtun_rping_strip(&st, data + pos, chunk, app + app_len, &olen, &np);
      if (strip_rc == REVTUN_OK) {
        app_len += olen;
        stripped += np;
      }
    }
    pos += chunk;
  }
  /* the pool socket closes with unexpected data exactly when the strip
   * helper let application bytes through */
  if (out.closed && out.reason == REVTUN_CLOSE_IDLE_UNEXPECTED_DATA && app_len == 0 &&
      strip_rc == REVTUN_OK)
    __builtin_trap();
  if (!out.closed && app_len != 0)
    __builtin_trap();
  (void)stripped;
  free(app);
  revtun_free(h);
  close(sv[1]);
  return 0;
}
