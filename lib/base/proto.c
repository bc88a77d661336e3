/* See proto.h. */
#include <stdio.h>
#include <string.h>

#include "base/proto.h"
#include "base/text.h"
#include "revtun/revtun.h"

static void *pb_alloc(void *data, size_t n) { return rt_malloc(data, n); }
static void pb_free(void *data, void *p) { rt_free(data, p); }

/* Tells an allocation failure apart from bad bytes, which protobuf-c does not. */
struct tracking {
  const struct rt_mem *mem;
  bool failed;
};

static void *tracking_alloc(void *data, size_t n) {
  struct tracking *t = data;
  void *p = rt_malloc(t->mem, n);
  if (!p)
    t->failed = true;
  return p;
}

static void tracking_free(void *data, void *p) { rt_free(((struct tracking *)data)->mem, p); }

void rt_pb_allocator(const struct rt_mem *m, ProtobufCAllocator *out) {
  out->alloc = pb_alloc;
  out->free = pb_free;
  out->allocator_data = (void *)m;
}

static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  uint64_t r = 0;
  for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
    uint8_t b = *(*p)++;
    r |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = r;
      return true;
    }
  }
  return false;
}

/* Walks the wire bytes with the schema and refuses nesting deeper than
 * RT_PB_MAX_DEPTH (google.protobuf.Struct can nest without bound, and
 * protobuf-c recurses once per level) and framing that runs past the end. */
static bool depth_ok(const ProtobufCMessageDescriptor *desc, const uint8_t *p, const uint8_t *end,
                     int depth) {
  if (depth > RT_PB_MAX_DEPTH)
    return false;
  while (p < end) {
    uint64_t tag, len;
    if (!read_varint(&p, end, &tag))
      return false;
    switch (tag & 7) {
    case 0:
      if (!read_varint(&p, end, &len))
        return false;
      break;
    case 1:
      if (end - p < 8)
        return false;
      p += 8;
      break;
    case 5:
      if (end - p < 4)
        return false;
      p += 4;
      break;
    case 2: {
      if (!read_varint(&p, end, &len) || len > (uint64_t)(end - p))
        return false;
      const ProtobufCFieldDescriptor *f =
          desc ? protobuf_c_message_descriptor_get_field(desc, (unsigned)(tag >> 3)) : NULL;
      if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
          !depth_ok(f->descriptor, p, p + len, depth + 1))
        return false;
      p += len;
      break;
    }
    default: /* groups are not part of any message revtun reads */ return false;
    }
  }
  return true;
}

int rt_pb_unpack(const struct rt_mem *m, const ProtobufCMessageDescriptor *desc, const uint8_t *buf,
                 size_t len, const char *what, ProtobufCMessage **out, char *errbuf,
                 size_t errbuf_len) {
  *out = NULL;
  static const uint8_t empty[1];
  if (!len)
    buf = empty; /* NULL + 0 is not a valid range */
  if (!depth_ok(desc, buf, buf + len, 0))
    return rt_fail(REVTUN_E_CONFIG, errbuf, errbuf_len,
                   "%s: malformed protobuf (truncated, bad framing or nested deeper than %d)", what,
                   RT_PB_MAX_DEPTH);
  struct tracking t = {m, false};
  ProtobufCAllocator a = {tracking_alloc, tracking_free, &t};
  *out = protobuf_c_message_unpack(desc, &a, len, buf);
  if (*out)
    return REVTUN_OK;
  if (t.failed)
    return rt_fail(REVTUN_E_NOMEM, errbuf, errbuf_len, "%s: out of memory while decoding", what);
  return rt_fail(REVTUN_E_CONFIG, errbuf, errbuf_len, "%s: malformed protobuf (not a valid %s)",
                 what, desc->name);
}

void rt_pb_free(const struct rt_mem *m, ProtobufCMessage *msg) {
  if (!msg)
    return;
  ProtobufCAllocator a;
  rt_pb_allocator(m, &a);
  protobuf_c_message_free_unpacked(msg, &a);
}

bool rt_pb_has_unknown(const ProtobufCMessage *msg, uint32_t number) {
  for (unsigned i = 0; i < msg->n_unknown_fields; i++)
    if (msg->unknown_fields[i].tag == number)
      return true;
  return false;
}

const char *rt_pb_type_name(const char *type_url) {
  const char *slash = strrchr(type_url, '/');
  return slash ? slash + 1 : type_url;
}
