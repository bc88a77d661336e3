/* See rping.h; and the post-handoff strip helper of the public API. */
#include <string.h>

#include "base/rping.h"
#include "revtun/revtun.h"

enum rt_rping_scan rt_rping_scan(const uint8_t *in, size_t n, uint8_t *partial, size_t *acks,
                                 size_t *stop) {
  uint8_t k = *partial;
  for (size_t i = 0; i < n; i++) {
    if (in[i] != (uint8_t)RT_RPING[k]) {
      *partial = k;
      *stop = i;
      return RT_SCAN_GARBAGE;
    }
    if (++k == RT_RPING_LEN) {
      k = 0;
      (*acks)++;
    }
  }
  *partial = k;
  *stop = n;
  return RT_SCAN_OK;
}

/* The strip state word: bits 0-2 hold the partial echo length (0..4), bit 3
 * latches pass-through once the first application byte has been seen. */
#define STRIP_PARTIAL_MASK 0x7u
#define STRIP_PASSTHROUGH 0x8u

int revtun_rping_strip(revtun_strip_t *state, const uint8_t *in, size_t in_len, uint8_t *out,
                       size_t *out_len, size_t *pings_out) {
  if (!state || !out_len || (in_len && (!in || !out)) || (*state & STRIP_PARTIAL_MASK) >= 5)
    return REVTUN_E_INVAL;
  size_t pings = 0, stop = 0;
  *out_len = 0;
  if (pings_out)
    *pings_out = 0;
  if (*state & STRIP_PASSTHROUGH) {
    if (in_len)
      memmove(out, in, in_len);
    *out_len = in_len;
    return REVTUN_OK;
  }
  uint8_t partial = (uint8_t)(*state & STRIP_PARTIAL_MASK);
  enum rt_rping_scan r = rt_rping_scan(in, in_len, &partial, &pings, &stop);
  if (pings_out)
    *pings_out = pings;
  if (pings * RT_RPING_LEN >= RT_FLOOD_BYTES)
    return REVTUN_E_PROTOCOL;
  if (r == RT_SCAN_OK) {
    *state = partial; /* everything was echo; hold the partial */
    return REVTUN_OK;
  }
  /* The bytes of the unfinished window were application data after all. */
  memmove(out + partial, in + stop, in_len - stop);
  memcpy(out, RT_RPING, partial);
  *out_len = partial + (in_len - stop);
  *state = STRIP_PASSTHROUGH;
  return REVTUN_OK;
}

int revtun_rping_strip_active(revtun_strip_t state) { return !(state & STRIP_PASSTHROUGH); }
