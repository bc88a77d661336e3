/* Config parsing and validation: every field of the encoded configs (made by
 * the reference protoc --encode) comes back exactly, and every bad input gets
 * REVTUN_E_CONFIG with a sentence naming the field. */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static int noop_create(const char *type_url, const uint8_t *cfg, size_t len, void *user,
                       void **instance, char *err, size_t errlen) {
  (void)type_url, (void)cfg, (void)len, (void)err, (void)errlen;
  *instance = user;
  return REVTUN_OK;
}
static void noop_event(void *instance, const revtun_event_t *ev) { (void)instance, (void)ev; }
static void *only_malloc(size_t n, void *u) {
  (void)u;
  return malloc(n);
}

static int validate(const char *name, char *err, size_t errlen) {
  size_t len;
  uint8_t *cfg = tu_config(name, &len);
  int rc = revtun_config_validate(cfg, len, NULL, err, errlen);
  free(cfg);
  return rc;
}

START_TEST(empty_config_gives_defaults) {
  static struct tu_rec r; /* large: not on the stack */
  tu_rec_init(&r);
  revtun_t *h = tu_new("empty", &r, 0);
  ck_assert_str_eq(revtun_config_stat_prefix(h), "reverse_tunnel_acceptor");
  ck_assert_uint_eq(revtun_config_ping_failure_threshold(h), 3);
  ck_assert_int_eq(revtun_config_detailed_stats(h), 0);
  ck_assert_int_eq(revtun_config_tenant_isolation(h), 0);
  ck_assert_uint_eq(revtun_config_max_connections_per_node(h), 0);
  ck_assert_int_eq(revtun_config_reporter(h, NULL, NULL, NULL, NULL), REVTUN_E_NOT_FOUND);
  ck_assert_uint_eq(revtun_config_access_log_count(h), 0);
  ck_assert_int_eq(revtun_config_access_log(h, 0, NULL, NULL, NULL, NULL), REVTUN_E_NOT_FOUND);
  revtun_free(h);
  /* a zero-length buffer is the empty message too, even with a NULL pointer */
  ck_assert_int_eq(revtun_config_validate(NULL, 0, NULL, NULL, 0), REVTUN_OK);
}
END_TEST

START_TEST(full_config_every_field_exact) {
  revtun_options_t *o;
  ck_assert_int_eq(revtun_options_new(&o), REVTUN_OK);
  ck_assert_int_eq(
      revtun_reporter_register(o, "test.reporter", noop_create, noop_event, NULL, NULL), REVTUN_OK);
  ck_assert_int_eq(
      revtun_access_logger_register(o, "test.logger.one", noop_create, noop_event, NULL, NULL),
      REVTUN_OK);
  ck_assert_int_eq(
      revtun_access_logger_register(o, "test.logger.two", noop_create, noop_event, NULL, NULL),
      REVTUN_OK);
  revtun_t *h = tu_new_opts("full", o, 0);
  ck_assert_str_eq(revtun_config_stat_prefix(h), "edge_tunnels");
  ck_assert_uint_eq(revtun_config_ping_failure_threshold(h), 5);
  ck_assert_int_eq(revtun_config_detailed_stats(h), 1);
  ck_assert_int_eq(revtun_config_tenant_isolation(h), 1);
  ck_assert_uint_eq(revtun_config_max_connections_per_node(h), 7);

  const char *name, *type;
  const uint8_t *val;
  size_t vlen;
  ck_assert_int_eq(revtun_config_reporter(h, &name, &type, &val, &vlen), REVTUN_OK);
  ck_assert_str_eq(name, "test.reporter");
  ck_assert_str_eq(type, "type.googleapis.com/google.protobuf.StringValue");
  ck_assert_uint_eq(vlen, 14);
  ck_assert_mem_eq(val, "\n\x0creporter-cfg", 14);

  ck_assert_uint_eq(revtun_config_access_log_count(h), 2);
  ck_assert_int_eq(revtun_config_access_log(h, 0, &name, &type, &val, &vlen), REVTUN_OK);
  ck_assert_str_eq(name, "test.logger.one");
  ck_assert_str_eq(type, "type.googleapis.com/google.protobuf.BytesValue");
  ck_assert_uint_eq(vlen, 5);
  ck_assert_mem_eq(val, "\n\x03\x01\x02\x03", 5);
  ck_assert_int_eq(revtun_config_access_log(h, 1, &name, &type, &val, &vlen), REVTUN_OK);
  ck_assert_str_eq(name, "test.logger.two");
  ck_assert_str_eq(type, "");
  ck_assert_uint_eq(vlen, 0);
  revtun_free(h);

  /* the same bytes validate with these factories, and fail without them */
  size_t len;
  uint8_t *cfg = tu_config("full", &len);
  char err[256];
  ck_assert_int_eq(revtun_config_validate(cfg, len, o, err, sizeof(err)), REVTUN_OK);
  ck_assert_int_eq(revtun_config_validate(cfg, len, NULL, err, sizeof(err)), REVTUN_E_CONFIG);
  ck_assert_ptr_nonnull(strstr(err, "test.logger.one"));
  free(cfg);
  revtun_options_free(o);
}
END_TEST

START_TEST(wrapper_present_with_zero_is_rejected) {
  char err[256];
  ck_assert_int_eq(validate("threshold_zero", err, sizeof(err)), REVTUN_E_CONFIG);
  ck_assert_str_eq(err, "ping_failure_threshold must be >= 1 (got 0)");
  size_t len;
  uint8_t *cfg = tu_config("threshold_zero", &len);
  revtun_t *h = (revtun_t *)&h;
  ck_assert_int_eq(revtun_new(&h, cfg, len, NULL, 0, err, sizeof(err)), REVTUN_E_CONFIG);
  ck_assert_ptr_null(h);
  free(cfg);
}
END_TEST

START_TEST(wrapper_values_one_and_false) {
  static struct tu_rec r; /* large: not on the stack */
  tu_rec_init(&r);
  revtun_t *h = tu_new("threshold_one", &r, 0);
  ck_assert_uint_eq(revtun_config_ping_failure_threshold(h), 1);
  revtun_free(h);
  h = tu_new("isolation_false", &r, 0);
  ck_assert_int_eq(revtun_config_tenant_isolation(h), 0);
  ck_assert_str_eq(revtun_config_stat_prefix(h), "reverse_tunnel_acceptor");
  revtun_free(h);
}
END_TEST

START_TEST(garbage_is_malformed) {
  char err[256];
  static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                    0xff, 0xff, 0xff, 0xff, 0x01};
  ck_assert_int_eq(revtun_config_validate(garbage, sizeof(garbage), NULL, err, sizeof(err)),
                   REVTUN_E_CONFIG);
  ck_assert_ptr_nonnull(strstr(err, "malformed protobuf"));
  /* stat_prefix (field 1) declared as a varint: wrong wire type */
  static const uint8_t wrong_type[] = {0x08, 0x01};
  ck_assert_int_eq(revtun_config_validate(wrong_type, sizeof(wrong_type), NULL, err, sizeof(err)),
                   REVTUN_E_CONFIG);
  /* a group start tag */
  static const uint8_t group[] = {0x0b};
  ck_assert_int_eq(revtun_config_validate(group, 1, NULL, err, sizeof(err)), REVTUN_E_CONFIG);
}
END_TEST

START_TEST(every_truncation_is_clean) {
  size_t len;
  uint8_t *cfg = tu_config("full", &len);
  size_t rejected = 0;
  for (size_t n = 0; n < len; n++) {
    char err[256] = "";
    uint8_t *copy = malloc(n ? n : 1); /* exact size so ASan sees any overread */
    memcpy(copy, cfg, n);
    int rc = revtun_config_validate(copy, n, NULL, err, sizeof(err));
    free(copy);
    /* a cut at a field boundary is a shorter valid message, which then fails
     * only because the test factories are not registered */
    ck_assert_msg(rc == REVTUN_OK || rc == REVTUN_E_CONFIG, "prefix %zu: %d", n, rc);
    if (rc == REVTUN_E_CONFIG)
      ck_assert_msg(strlen(err) > 0, "prefix %zu: no message", n);
    rejected += strstr(err, "malformed") != NULL;
  }
  /* cutting inside the stat_prefix string must be seen as malformed */
  char err[256];
  ck_assert_int_eq(revtun_config_validate(cfg, 5, NULL, err, sizeof(err)), REVTUN_E_CONFIG);
  ck_assert_ptr_nonnull(strstr(err, "malformed"));
  ck_assert_uint_gt(rejected, len / 2);
  free(cfg);
}
END_TEST

START_TEST(oversized_input_is_capped) {
  revtun_options_t *o;
  ck_assert_int_eq(revtun_options_new(&o), REVTUN_OK);
  ck_assert_int_eq(revtun_options_set_limit(o, REVTUN_LIMIT_CONFIG_BYTES, 8), REVTUN_OK);
  static const uint8_t cfg[] = {0x0a, 0x09, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'};
  char err[256];
  ck_assert_int_eq(revtun_config_validate(cfg, sizeof(cfg), o, err, sizeof(err)), REVTUN_E_CONFIG);
  ck_assert_str_eq(err, "config is 11 bytes, more than the limit of 8 bytes");
  revtun_t *h = NULL;
  ck_assert_int_eq(revtun_new(&h, cfg, sizeof(cfg), o, 0, err, sizeof(err)), REVTUN_E_CONFIG);
  ck_assert_int_eq(revtun_options_set_limit(o, REVTUN_LIMIT_CONFIG_BYTES, 11), REVTUN_OK);
  ck_assert_int_eq(revtun_config_validate(cfg, sizeof(cfg), o, err, sizeof(err)), REVTUN_OK);
  /* the default cap is 1 MiB */
  size_t big = (1u << 20) + 1;
  uint8_t *huge = calloc(1, big);
  ck_assert_int_eq(revtun_config_validate(huge, big, NULL, err, sizeof(err)), REVTUN_E_CONFIG);
  ck_assert_ptr_nonnull(strstr(err, "limit"));
  free(huge);
  revtun_options_free(o);
}
END_TEST

START_TEST(unknown_fields_are_skipped) {
  /* stat_prefix "ab", then field 99 (varint), field 100 (bytes), field 101 (fixed32) */
  static const uint8_t cfg[] = {0x0a, 0x02, 'a',  'b',  0x98, 0x06, 0x07, 0xa2, 0x06,
                                0x01, 'x',  0xad, 0x06, 1,    2,    3,    4};
  char err[256];
  revtun_t *h = NULL;
  ck_assert_int_eq(revtun_new(&h, cfg, sizeof(cfg), NULL, 0, err, sizeof(err)), REVTUN_OK);
  ck_assert_str_eq(revtun_config_stat_prefix(h), "ab");
  revtun_free(h);
}
END_TEST

START_TEST(access_log_filter_is_refused) {
  /* access_log { name: "x" filter { } } : field 6 holding field 1 and field 2 */
  static const uint8_t cfg[] = {0x32, 0x05, 0x0a, 0x01, 'x', 0x12, 0x00};
  char err[256];
  ck_assert_int_eq(revtun_config_validate(cfg, sizeof(cfg), NULL, err, sizeof(err)),
                   REVTUN_E_CONFIG);
  ck_assert_str_eq(err, "access_log[0].filter is not supported by this library");
}
END_TEST

START_TEST(reporter_rules) {
  char err[256];
  ck_assert_int_eq(validate("reporter_noname", err, sizeof(err)), REVTUN_E_CONFIG);
  ck_assert_str_eq(err, "reporter_config.name must not be empty");
  ck_assert_int_eq(validate("reporter_notyped", err, sizeof(err)), REVTUN_E_CONFIG);
  ck_assert_str_eq(err, "reporter_config.typed_config is required (reporter 'some.reporter')");
}
END_TEST

START_TEST(errbuf_is_optional_and_truncated) {
  ck_assert_int_eq(validate("threshold_zero", NULL, 0), REVTUN_E_CONFIG);
  char small[8];
  ck_assert_int_eq(validate("threshold_zero", small, sizeof(small)), REVTUN_E_CONFIG);
  ck_assert_str_eq(small, "ping_fa");
}
END_TEST

START_TEST(deeply_nested_unknown_fields_are_skipped) {
  /* 100000 levels of an unknown length-delimited field: skipped as bytes,
   * never recursed into, so this parses without touching the stack. */
  size_t depth = 100000, len = 0;
  uint8_t *buf = malloc(depth * 6 + 16);
  /* build from the inside out: each level is field 99 (LEN) wrapping the rest */
  size_t cap = depth * 6 + 16;
  size_t off = cap;
  for (size_t i = 0; i < depth; i++) {
    size_t inner = cap - off;
    uint8_t hdr[8];
    size_t h = 0;
    hdr[h++] = 0x9a;
    hdr[h++] = 0x06;
    size_t v = inner;
    do {
      hdr[h++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
      v >>= 7;
    } while (v);
    if (off < h)
      break;
    off -= h;
    memcpy(buf + off, hdr, h);
  }
  len = cap - off;
  char err[256];
  int rc = revtun_config_validate(buf + off, len, NULL, err, sizeof(err));
  ck_assert_int_eq(rc, REVTUN_OK);
  free(buf);
}
END_TEST

START_TEST(options_misuse) {
  revtun_options_t *o;
  ck_assert_int_eq(revtun_options_new(NULL), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_options_new(&o), REVTUN_OK);
  ck_assert_int_eq(revtun_options_set_limit(o, 999, 1), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_options_set_limit(o, REVTUN_LIMIT_CONFIG_BYTES, 0), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_options_set_worker_name(o, ""), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_options_set_log_cb(o, NULL, 9), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_options_set_allocator(o, only_malloc, NULL, NULL, NULL), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_reporter_register(o, "r", noop_create, noop_event, NULL, NULL),
                   REVTUN_OK);
  ck_assert_int_eq(revtun_reporter_register(o, "r", noop_create, noop_event, NULL, NULL),
                   REVTUN_E_EXISTS);
  ck_assert_int_eq(revtun_reporter_register(o, "", noop_create, noop_event, NULL, NULL),
                   REVTUN_E_INVAL);
  revtun_options_free(o);
  revtun_options_free(NULL);
  revtun_free(NULL);
  ck_assert_int_eq(revtun_new(NULL, NULL, 0, NULL, 0, NULL, 0), REVTUN_E_INVAL);
}
END_TEST

START_TEST(names_and_errors_are_total) {
  ck_assert_str_eq(revtun_status_name(REVTUN_E_NOMEM), "REVTUN_E_NOMEM");
  ck_assert_str_eq(revtun_strerror(REVTUN_E_CONFIG), "invalid configuration");
  ck_assert_str_eq(revtun_strerror(-9999), "unknown status");
  ck_assert_str_eq(revtun_status_name(12345), "REVTUN_E_UNKNOWN");
  ck_assert_str_eq(revtun_event_kind_name(REVTUN_EV_PING_TIMEOUT), "idle_ping_timeout");
  ck_assert_str_eq(revtun_event_kind_name(0), "unknown");
  ck_assert_str_eq(revtun_close_reason_name(REVTUN_CLOSE_IDLE_KEEPALIVE_FLOOD),
                   "idle_keepalive_flood");
  ck_assert_str_eq(revtun_socket_state_name(REVTUN_SOCK_IN_USE), "in_use");
  int num = 0;
  ck_assert_str_eq(revtun_version(&num), REVTUN_VERSION_STR);
  ck_assert_int_eq(num, REVTUN_VERSION_NUM);
  ck_assert(REVTUN_VERSION_AT_LEAST(0, 1, 0));
}
END_TEST

int main(void) {
  Suite *s = suite_create("config");
  TCase *tc = tcase_create("config");
  tcase_add_test(tc, empty_config_gives_defaults);
  tcase_add_test(tc, full_config_every_field_exact);
  tcase_add_test(tc, wrapper_present_with_zero_is_rejected);
  tcase_add_test(tc, wrapper_values_one_and_false);
  tcase_add_test(tc, garbage_is_malformed);
  tcase_add_test(tc, every_truncation_is_clean);
  tcase_add_test(tc, oversized_input_is_capped);
  tcase_add_test(tc, unknown_fields_are_skipped);
  tcase_add_test(tc, access_log_filter_is_refused);
  tcase_add_test(tc, reporter_rules);
  tcase_add_test(tc, errbuf_is_optional_and_truncated);
  tcase_add_test(tc, deeply_nested_unknown_fields_are_skipped);
  tcase_add_test(tc, options_misuse);
  tcase_add_test(tc, names_and_errors_are_total);
  suite_add_tcase(s, tc);
  return tu_run(s);
}
