/* Envoy substitution format strings (command operators), compiled once and
 * rendered many times. Shared by the lifecycle access loggers (context: a
 * lifecycle record) and the handshake acceptor (context: the request headers
 * and the connection's addresses), which is why the context is a small struct
 * of optional pieces and the set of operators a caller accepts is a mask:
 * an operator outside the mask is a compile error naming it, never a silent
 * literal or a silent "-".
 *
 * Operators (Envoy spelling; ":Z" after the closing parenthesis or the name
 * truncates the value to Z bytes, as in Envoy):
 *   %START_TIME%, %START_TIME(strftime)%     UTC; extra %f %1f..%9f %s %E<n>S %E*S %Ez
 *   %DYNAMIC_METADATA(ns[:key[:...]])%       a record: ns envoy.reverse_tunnel.lifecycle and
 *                                            the acceptor's validation metadata; a
 *                                            handshake: what the host attached
 *   %FILTER_STATE(key[:PLAIN|:TYPED])%       a record: envoy.reverse_tunnel.<k>; a
 *                                            handshake: what the host attached
 *   %DOWNSTREAM_{REMOTE,LOCAL}_ADDRESS[_WITHOUT_PORT]%, %DOWNSTREAM_{REMOTE,LOCAL}_PORT%
 *   %CONNECTION_TERMINATION_DETAILS%         the close reason
 *   %ACCESS_LOG_TYPE%                        the record's Envoy access log type: what
 *                                            Envoy's synthetic lifecycle records carry
 *   %CONNECTION_ID%                          0, Envoy's value for a stream without a
 *                                            connection id (records belong to none)
 *   %REQ(name[?alternative])%                request header (acceptor context)
 *   %DOWNSTREAM_PEER_{URI_SAN,DNS_SAN,SUBJECT,ISSUER,FINGERPRINT_256,SERIAL}%,
 *   %DOWNSTREAM_TLS_VERSION%                 the peer identity a transport gives
 *   %DOWNSTREAM_PEER_CERT_V_{START,END}[(strftime)]%   its certificate's validity
 *   %%                                       a literal '%'
 * A value that is absent renders "-" in text ("" with omit_empty_values) and
 * null in typed JSON (the key is left out with omit_empty_values).
 *
 * Time: START_TIME needs wall-clock time, which the injected monotonic `now`
 * cannot give. The context may carry it (ctx.wall); when it does not, the
 * renderer reads CLOCK_REALTIME once per record. Rendering happens
 * synchronously with the event, so this is the event's time; the state
 * machine itself still never reads a clock. */
#ifndef REVTUN_FORMAT_FORMAT_H
#define REVTUN_FORMAT_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <time.h>

#include "base/mem.h"

#define RT_FMT_MAX_RECORD 16384u /* longest rendered record; longer ones are shortened */
#define RT_FMT_MAX_SOURCE 8192u  /* longest format string or JSON template */

/* Operator families, for the `ops` mask of the compile functions. */
enum rt_fmt_ops {
  RT_FMT_OP_START_TIME = 1u << 0,
  RT_FMT_OP_DYNAMIC_METADATA = 1u << 1,
  RT_FMT_OP_FILTER_STATE = 1u << 2,
  RT_FMT_OP_DOWNSTREAM_ADDRESS = 1u << 3, /* the _ADDRESS, _WITHOUT_PORT and _PORT forms */
  RT_FMT_OP_TERMINATION_DETAILS = 1u << 4,
  RT_FMT_OP_REQ = 1u << 5,
  RT_FMT_OP_PEER = 1u << 6,  /* %DOWNSTREAM_PEER_*% and %DOWNSTREAM_TLS_VERSION% */
  RT_FMT_OP_RECORD = 1u << 7 /* %ACCESS_LOG_TYPE%, %CONNECTION_ID% */
};
#define RT_FMT_OPS_LIFECYCLE                                                                       \
  (RT_FMT_OP_START_TIME | RT_FMT_OP_DYNAMIC_METADATA | RT_FMT_OP_FILTER_STATE |                    \
   RT_FMT_OP_DOWNSTREAM_ADDRESS | RT_FMT_OP_TERMINATION_DETAILS | RT_FMT_OP_PEER |                 \
   RT_FMT_OP_RECORD)
#define RT_FMT_OPS_HANDSHAKE                                                                       \
  (RT_FMT_OP_REQ | RT_FMT_OP_DOWNSTREAM_ADDRESS | RT_FMT_OP_START_TIME | RT_FMT_OP_PEER |          \
   RT_FMT_OP_DYNAMIC_METADATA | RT_FMT_OP_FILTER_STATE)

/* Compile flags. */
enum rt_fmt_flags {
  RT_FMT_OMIT_EMPTY = 1u << 0, /* omit_empty_values */
  RT_FMT_UNTYPED = 1u << 1     /* JSON: legacy json_format, every value a string */
};

/* Flags rt_fmt_render() reports. */
enum rt_fmt_result {
  RT_FMT_R_SHORTENED = 1u << 0, /* values were cut (or the record truncated) to fit cap */
  RT_FMT_R_NULL = 1u << 1       /* a text format made of one operator that had no value */
};

/* Looks up a request header (case-insensitively; `name` is lower case).
 * Returns the value, not necessarily NUL-terminated, or NULL when absent. */
typedef const char *(*rt_fmt_header_fn)(const void *user, const char *name, size_t *len);

/* One field of the peer's identity (enum revtun_peer_field): the value, not
 * necessarily NUL-terminated, or NULL when there is none. */
typedef const char *(*rt_fmt_peer_fn)(const void *user, int field, size_t *len);

/* What a record is rendered against. Every piece is optional. */
struct rt_fmt_ctx {
  const struct revtun_event *ev; /* lifecycle record: metadata, filter state, addresses */
  rt_fmt_header_fn req_header;   /* %REQ(...)% */
  const void *req_user;
  const struct sockaddr *remote, *local; /* used when ev is NULL */
  socklen_t remote_len, local_len;
  rt_fmt_peer_fn peer; /* %DOWNSTREAM_PEER_*%, used when ev is NULL */
  const void *peer_user;
  const struct timespec *wall; /* START_TIME; NULL = read CLOCK_REALTIME at render */
  /* DYNAMIC_METADATA and FILTER_STATE when ev is NULL: what the host attached
   * to a connection before accept (base/conn_meta.h) */
  const struct revtun_conn_meta *conn_meta;
};

struct rt_fmt;
struct Google__Protobuf__Struct;
struct Envoy__Config__Core__V3__SubstitutionFormatString;

/* A text format string. On error, errbuf names the problem and its offset,
 * e.g. "unsupported command operator %FOO% at offset 12". */
int rt_fmt_compile(const struct rt_mem *m, const char *src, size_t len, unsigned ops,
                   unsigned flags, struct rt_fmt **out, char *errbuf, size_t errbuf_len);

/* A json_format template: string values are format strings, nested structs
 * and lists keep their shape, numbers/bools/null are constants; keys keep the
 * config's (wire) order. Output is one compact JSON object and "\n". */
int rt_fmt_compile_json(const struct rt_mem *m, const struct Google__Protobuf__Struct *tmpl,
                        unsigned ops, unsigned flags, struct rt_fmt **out, char *errbuf,
                        size_t errbuf_len);

/* An envoy.config.core.v3.SubstitutionFormatString (format_sfs.c). `what` is
 * the field path used in messages ("access_log[0].log_format"). */
int rt_fmt_from_sfs(const struct rt_mem *m,
                    const struct Envoy__Config__Core__V3__SubstitutionFormatString *sfs,
                    unsigned ops, const char *what, struct rt_fmt **out, char *errbuf,
                    size_t errbuf_len);

void rt_fmt_free(const struct rt_mem *m, struct rt_fmt *f);

/* The operator families (RT_FMT_OP_*) a compiled format uses. */
unsigned rt_fmt_ops_used(const struct rt_fmt *f);

/* Renders one record into out[0..cap) and returns its length (never more than
 * cap; nothing is NUL-terminated). A record that does not fit has its values
 * shortened (256 bytes, then empty) before a text record is cut; flags_out
 * (optional) reports RT_FMT_R_*. */
size_t rt_fmt_render(const struct rt_fmt *f, const struct rt_fmt_ctx *ctx, char *out, size_t cap,
                     unsigned *flags_out);

/* google.protobuf.Struct as compact JSON (keys in wire order), malloc'd with
 * m and NUL-terminated. Used for the dynamic-module reporter's config. */
int rt_json_from_struct(const struct rt_mem *m, const struct Google__Protobuf__Struct *s,
                        char **out, size_t *len_out);

#endif
