/* Text every layer writes: the sentence for a caller's error buffer, and
 * decimal integers without printf. */
#ifndef REVTUN_BASE_TEXT_H
#define REVTUN_BASE_TEXT_H

#include <stddef.h>
#include <stdint.h>

/* Writes a sentence into errbuf (when given) and returns status. */
int rt_fail(int status, char *errbuf, size_t errbuf_len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Decimal digits of v into buf (room for 20), no NUL; returns the count. */
size_t rt_u64_dec(uint64_t v, char *buf);

/* The same as a string: buf needs room for 21 bytes; returns buf. */
char *rt_u64_str(uint64_t v, char *buf);

#endif
