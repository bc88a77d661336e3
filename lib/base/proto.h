/* Defensive protobuf-c decoding: a nesting-depth guard walked before
 * protobuf-c recurses (protobuf-c 1.4.1 recurses once per level and
 * overflows the stack on a google.protobuf.Value nested 100,000 deep), the
 * handle's allocator, and allocation failures told apart from bad bytes. */
#ifndef REVTUN_BASE_PROTO_H
#define REVTUN_BASE_PROTO_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include "base/mem.h"

#define RT_PB_MAX_DEPTH 32

void rt_pb_allocator(const struct rt_mem *m, ProtobufCAllocator *out);
/* Unpacks into *out. REVTUN_E_CONFIG with a sentence naming `what` (a field
 * path) for bad bytes, REVTUN_E_NOMEM when an allocation failed. */
int rt_pb_unpack(const struct rt_mem *m, const ProtobufCMessageDescriptor *desc, const uint8_t *buf,
                 size_t len, const char *what, ProtobufCMessage **out, char *errbuf,
                 size_t errbuf_len);
void rt_pb_free(const struct rt_mem *m, ProtobufCMessage *msg);
/* True when msg carried field `number` that this build's schema left out. */
bool rt_pb_has_unknown(const ProtobufCMessage *msg, uint32_t number);
/* The type name of an Any type URL: the part after the last '/'. */
const char *rt_pb_type_name(const char *type_url);

#endif
