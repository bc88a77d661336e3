/*
 * revtun-upstream-proxy: encoding and decoding the handover's messages
 * (the format is described in handover_wire.h). The decoder trusts nothing:
 * the peer is another process, possibly another version of this program,
 * possibly crashed half-way through writing.
 */
#include <string.h>

#include "handover_wire.h"

static uint16_t get16(const uint8_t *p) { return (uint16_t)((unsigned)p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

size_t ho_header(uint8_t *buf, uint16_t type, uint32_t payload_len) {
  memcpy(buf, "RVHO", 4);
  buf[4] = (uint8_t)(HO_VERSION >> 8);
  buf[5] = (uint8_t)HO_VERSION;
  buf[6] = (uint8_t)(type >> 8);
  buf[7] = (uint8_t)type;
  buf[8] = (uint8_t)(payload_len >> 24);
  buf[9] = (uint8_t)(payload_len >> 16);
  buf[10] = (uint8_t)(payload_len >> 8);
  buf[11] = (uint8_t)payload_len;
  return HO_HEADER + (size_t)payload_len;
}

static int bad(const char **why, const char *text) {
  *why = text;
  return HO_BAD;
}

static int decode_listeners(const uint8_t *p, size_t len, size_t nfds, struct ho_msg *m,
                            const char **why) {
  unsigned count[HO_L_MAX + 1] = {0};

  if (len < 1)
    return bad(why, "LISTENERS without a count");
  m->n = p[0];
  if (m->n < 1 || m->n > HO_MAX_LISTENERS)
    return bad(why, "LISTENERS count out of range");
  if (len != 1 + m->n)
    return bad(why, "LISTENERS length does not match its count");
  if (nfds != m->n)
    return bad(why, "LISTENERS descriptor count does not match its count");
  for (size_t i = 0; i < m->n; i++) {
    uint8_t k = p[1 + i];
    if (k < HO_L_TUNNEL || k > HO_L_MAX)
      return bad(why, "LISTENERS names an unknown listener");
    count[k]++;
    m->kinds[i] = k;
  }
  if (count[HO_L_ADMIN] > 1)
    return bad(why, "LISTENERS names an admin listener twice");
  if (count[HO_L_TUNNEL] != count[HO_L_CLIENT])
    return bad(why, "LISTENERS has not one client listener per tunnel listener");
  if (count[HO_L_TUNNEL] < 1 || count[HO_L_TUNNEL] > HO_MAX_WORKERS)
    return bad(why, "LISTENERS tunnel listener count out of range");
  m->workers = count[HO_L_TUNNEL];
  return HO_OK;
}

static int decode_tunnels(const uint8_t *p, size_t len, size_t nfds, struct ho_msg *m,
                          const char **why) {
  size_t off = 2;

  if (len < 2)
    return bad(why, "TUNNELS without a count");
  m->n = get16(p);
  if (m->n < 1 || m->n > HO_MAX_FDS)
    return bad(why, "TUNNELS count out of range");
  if (nfds != m->n)
    return bad(why, "TUNNELS descriptor count does not match its count");
  for (size_t i = 0; i < m->n; i++) {
    size_t sl;
    if (len - off < 2)
      return bad(why, "TUNNELS truncated before a state's length");
    sl = get16(p + off);
    off += 2;
    if (sl < 1 || sl > HO_MAX_STATE)
      return bad(why, "TUNNELS state length out of range");
    if (len - off < sl)
      return bad(why, "TUNNELS state longer than the message");
    m->state[i] = p + off;
    m->state_len[i] = sl;
    off += sl;
  }
  if (off != len)
    return bad(why, "TUNNELS has bytes after its last state");
  return HO_OK;
}

int ho_decode(const uint8_t *buf, size_t len, size_t nfds, struct ho_msg *m, const char **why) {
  const uint8_t *p;
  size_t plen;

  memset(m, 0, sizeof(*m));
  *why = NULL;
  if (len < HO_HEADER)
    return bad(why, "message shorter than its header");
  if (len > HO_MAX_MESSAGE)
    return bad(why, "message longer than any handover message");
  if (memcmp(buf, "RVHO", 4) != 0)
    return bad(why, "not a handover message (bad magic)");
  m->version = get16(buf + 4);
  m->type = get16(buf + 6);
  if (get32(buf + 8) != len - HO_HEADER)
    return bad(why, "payload length does not match the message");
  if (m->version != HO_VERSION) {
    *why = "unsupported handover version";
    return HO_BAD_VERSION;
  }
  p = buf + HO_HEADER;
  plen = len - HO_HEADER;
  switch (m->type) {
  case HO_LISTENERS: return decode_listeners(p, plen, nfds, m, why);
  case HO_TUNNELS: return decode_tunnels(p, plen, nfds, m, why);
  default: break;
  }
  if (nfds != 0)
    return bad(why, "descriptors on a message that carries none");
  switch (m->type) {
  case HO_HELLO:
  case HO_SERVING:
    if (plen != 0)
      return bad(why, "payload on a message that has none");
    return HO_OK;
  case HO_DONE:
    if (plen != 4)
      return bad(why, "DONE is not 4 bytes");
    m->total = get32(p);
    return HO_OK;
  case HO_REFUSE:
    if (plen < 1 || plen > HO_MAX_REASON)
      return bad(why, "REFUSE reason length out of range");
    m->reason = p;
    m->reason_len = plen;
    return HO_OK;
  default: return bad(why, "unknown message type");
  }
}
