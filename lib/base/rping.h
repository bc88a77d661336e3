/* The RPING keepalive on the wire: the library writes "RPING" and the
 * initiator echoes it. The scanner below reads echoes 5-byte window by
 * window, with a partial echo carried across reads; the idle keepalive reader
 * and the post-handoff strip helper (revtun_rping_strip) share it. */
#ifndef REVTUN_BASE_RPING_H
#define REVTUN_BASE_RPING_H

#include <stddef.h>
#include <stdint.h>

#define RT_RPING "RPING"
#define RT_RPING_LEN 5u
/* Echo bytes read at once (by one drain or one strip call) that make a flood. */
#define RT_FLOOD_BYTES 65536u

enum rt_rping_scan { RT_SCAN_OK, RT_SCAN_GARBAGE };

/* Consumes in[0..n) given a held partial of *partial bytes; counts complete
 * echoes in *acks and leaves the new partial in *partial. Stops at the first
 * byte that cannot belong to an echo, setting *stop to its offset. */
enum rt_rping_scan rt_rping_scan(const uint8_t *in, size_t n, uint8_t *partial, size_t *acks,
                                 size_t *stop);

#endif
