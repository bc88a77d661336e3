/*
 * revtun-upstream-proxy: the messages of a restart handover (handover.c),
 * as bytes. Kept apart from the sockets so that the decoder, which reads
 * what another process sent, can be fuzzed on its own (fuzz/fuzz_handover.c).
 *
 * One message is one SOCK_SEQPACKET record:
 *
 *   "RVHO"  version:u16  type:u16  payload_len:u32   (big-endian)   payload
 *
 * and carries descriptors (SCM_RIGHTS) only where its type says so:
 *
 *   HELLO      new -> old   no payload, no fds: "I speak this version"
 *   REFUSE     old -> new   1..HO_MAX_REASON bytes of text, no fds
 *   LISTENERS  old -> new   n:u8, then n kinds (u8); n fds, the i-th fd is of the
 *                           i-th kind. One tunnel and one client listener per
 *                           worker of the old instance (as many of each, at most
 *                           HO_MAX_WORKERS; the k-th of a kind is worker k's),
 *                           and at most one admin listener
 *   TUNNELS    old -> new   n:u16 (1..HO_MAX_FDS), then n x (len:u16, state);
 *                           n fds, the i-th state belongs to the i-th fd
 *   DONE       old -> new   total:u32, the tunnels sent before it; no fds
 *   SERVING    new -> old   no payload, no fds: "I accept on the listeners"
 */
#ifndef REVTUN_PROXY_HANDOVER_WIRE_H
#define REVTUN_PROXY_HANDOVER_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define HO_VERSION 1
#define HO_HEADER 12
#define HO_MAX_FDS 8      /* descriptors in one message */
#define HO_MAX_STATE 5168 /* one socket's state: REVTUN_SOCKET_STATE_MAX */
#define HO_MAX_REASON 256 /* a refusal's text */
#define HO_MAX_WORKERS 64 /* tunnel (and client) listeners in LISTENERS */
#define HO_MAX_LISTENERS (2 * HO_MAX_WORKERS + 1)
/* descriptors one received message may bring (the larger of the two) */
#define HO_MAX_MSG_FDS (HO_MAX_LISTENERS > HO_MAX_FDS ? HO_MAX_LISTENERS : HO_MAX_FDS)
#define HO_MAX_MESSAGE (HO_HEADER + 2 + HO_MAX_FDS * (2 + HO_MAX_STATE))

enum ho_type { HO_HELLO = 1, HO_REFUSE, HO_LISTENERS, HO_TUNNELS, HO_DONE, HO_SERVING };
enum ho_listener { HO_L_TUNNEL = 1, HO_L_CLIENT, HO_L_ADMIN, HO_L_MAX = HO_L_ADMIN };

/* What ho_decode() found; pointers point into the decoded buffer. */
struct ho_msg {
  uint16_t version, type;
  size_t n;                         /* LISTENERS: kinds; TUNNELS: states */
  uint8_t kinds[HO_MAX_LISTENERS];  /* LISTENERS */
  unsigned workers;                 /* LISTENERS: tunnel (= client) listeners */
  const uint8_t *state[HO_MAX_FDS]; /* TUNNELS */
  size_t state_len[HO_MAX_FDS];
  uint32_t total;        /* DONE */
  const uint8_t *reason; /* REFUSE: bytes, not NUL-terminated */
  size_t reason_len;
};

enum { HO_OK = 0, HO_BAD = -1, HO_BAD_VERSION = -2 };

/* Decodes one message of len bytes that arrived with nfds descriptors.
 * HO_OK; HO_BAD_VERSION (m->version says which) when the header is sound
 * but the version is not HO_VERSION; HO_BAD with a static sentence in *why
 * for anything else. Every length and count is checked against len, nfds
 * and the bounds above; nothing is read outside buf[0..len). */
int ho_decode(const uint8_t *buf, size_t len, size_t nfds, struct ho_msg *m, const char **why);

/* Writes a message's header for a payload of payload_len bytes (which the
 * caller puts at buf + HO_HEADER); returns the message's length. */
size_t ho_header(uint8_t *buf, uint16_t type, uint32_t payload_len);

#endif
