/* Reporters: a host factory chosen by name, and the built-in
 * dynamic-module reporter loading examples/reporter-module.c by name
 * (ENVOY_DYNAMIC_MODULES_SEARCH_PATH) and by file, calling it in order,
 * passing its config as Envoy does, and unloading it; plus every way the
 * config or the module can be wrong, with the exact error. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"

#define MODULE "librevtun_example_reporter.so"
#define MODULE_PATH TEST_MODULE_DIR "/" MODULE
#define DYNMOD_NAME "envoy.extensions.reverse_tunnel.reporting_service.dynamic_modules"

static struct tu_rec rec;
static char tmpdir[256], oldcwd[1024];

static void enter_tmpdir(void) {
  ck_assert_ptr_nonnull(getcwd(oldcwd, sizeof(oldcwd)));
  snprintf(tmpdir, sizeof(tmpdir), "%s/revtun-rep-XXXXXX",
           getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  ck_assert_ptr_nonnull(mkdtemp(tmpdir));
  ck_assert_int_eq(chdir(tmpdir), 0);
  setenv("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", TEST_MODULE_DIR, 1);
  tu_rec_init(&rec);
}

static void leave_tmpdir(void) {
  ck_assert_int_eq(chdir(oldcwd), 0);
  char cmd[400];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
  ck_assert_int_eq(system(cmd), 0);
  unsetenv("ENVOY_DYNAMIC_MODULES_SEARCH_PATH");
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  char *buf = calloc(1, 1 << 16);
  if (f) {
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = '\0';
    fclose(f);
  }
  return buf;
}

static void assert_file(const char *path, const char *expected) {
  char *got = slurp(path);
  ck_assert_str_eq(got, expected);
  free(got);
}

static bool module_resident(const char *path) {
  void *dl = dlopen(path, RTLD_NOLOAD | RTLD_LAZY);
  if (dl)
    dlclose(dl);
  return dl != NULL;
}

static int pair(int *peer) {
  int sv[2];
  tu_socketpair(sv);
  *peer = sv[1];
  return sv[0];
}

/* connected x2, goaway, disconnected x2 (one after handoff, one idle). */
static void drive(revtun_t *h, const char *tenant) {
  int pa, a = pair(&pa), pb, b = pair(&pb), fd;
  ck_assert_int_eq(tu_register(h, a, "n1", "c1", tenant, 60000, 1), REVTUN_OK);
  ck_assert_int_eq(tu_register(h, b, "n2", "c1", tenant, 60000, 2), REVTUN_OK);
  ck_assert_int_eq(revtun_handoff(h, "n2", tenant, 3, &fd, NULL), REVTUN_OK);
  ck_assert_int_eq(revtun_note_goaway(h, b, 4), REVTUN_OK);
  ck_assert_int_eq(revtun_mark_dead(h, b, REVTUN_CLOSE_REMOTE_CLOSE, 5), REVTUN_OK);
  close(b);
  close(pb);
  close(pa); /* the idle one's peer goes away */
  ck_assert_int_eq(revtun_process_io(h, a, REVTUN_IO_READ, 6), REVTUN_OK);
}

static const char tour_lines[] = "server_initialized\n"
                                 "connected node=n1 cluster=c1 tenant=\n"
                                 "connected node=n2 cluster=c1 tenant=\n"
                                 "goaway node=n2 cluster=c1\n"
                                 "disconnected node=n2 cluster=c1\n"
                                 "disconnected node=n1 cluster=c1\n"
                                 "destroy\n";

START_TEST(dynamic_module_by_name_called_in_order_then_unloaded) {
  ck_assert(!module_resident(MODULE_PATH));
  revtun_t *h = tu_new("rep_dynmod_name", &rec, 0);
  ck_assert(module_resident(MODULE_PATH));
  assert_file("reporter.log", "new reporter.log\nserver_initialized\n");
  drive(h, NULL);
  revtun_free(h);
  ck_assert(!module_resident(MODULE_PATH)); /* dlclose'd */
  char want[1024];
  snprintf(want, sizeof(want), "new reporter.log\n%s", tour_lines);
  assert_file("reporter.log", want);
  /* the host's reporter callback saw the same events */
  ck_assert_uint_eq(tu_count(&rec, REVTUN_EV_REPORT_CONNECTED), 2);
  ck_assert_uint_eq(tu_count(&rec, REVTUN_EV_REPORT_GOAWAY), 1);
  ck_assert_uint_eq(tu_count(&rec, REVTUN_EV_REPORT_DISCONNECTED), 2);
}
END_TEST

static const char *new_error(const char *config) {
  static char err[1024];
  size_t len;
  uint8_t *cfg = tu_config(config, &len);
  revtun_t *h = (revtun_t *)&h;
  int fds = tu_open_fds();
  ck_assert_int_eq(revtun_new(&h, cfg, len, NULL, 0, err, sizeof(err)), REVTUN_E_CONFIG);
  ck_assert_ptr_null(h);
  ck_assert_int_eq(tu_open_fds(), fds);
  free(cfg);
  return err;
}

START_TEST(dynamic_module_by_file_and_by_type) {
  unsetenv("ENVOY_DYNAMIC_MODULES_SEARCH_PATH");
  ck_assert_int_eq(symlink(TEST_MODULE_DIR, "mod"), 0);
  revtun_t *h = tu_new("rep_dynmod_file", &rec, 0);
  drive(h, NULL);
  revtun_free(h);
  char want[1024];
  snprintf(want, sizeof(want), "new reporter.log\n%s", tour_lines);
  assert_file("reporter.log", want);
  /* any name: the typed_config type picks the built-in */
  unlink("reporter.log");
  setenv("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", TEST_MODULE_DIR, 1);
  h = tu_new("rep_dynmod_by_type", &rec, 0);
  revtun_free(h);
  assert_file("reporter.log", "new reporter.log\nserver_initialized\ndestroy\n");
  /* no search directory: a module in the working directory is never
   * picked up (an attacker who can write there cannot inject code) */
  unlink("reporter.log");
  unsetenv("ENVOY_DYNAMIC_MODULES_SEARCH_PATH");
  ck_assert_int_eq(symlink(MODULE_PATH, MODULE), 0);
  const char *e = new_error("rep_dynmod_name");
  ck_assert_msg(strstr(e, "not found neither in a search directory (none is set) nor in the "
                          "standard library paths") != NULL,
                "%s", e);
  ck_assert_int_ne(access("reporter.log", F_OK), 0);
  /* the host's explicit directory wins over the environment */
  setenv("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", "/nonexistent", 1);
  revtun_options_t *o;
  ck_assert_int_eq(revtun_options_new(&o), REVTUN_OK);
  tu_options(o, &rec);
  ck_assert_int_eq(revtun_options_set_module_path(o, ""), REVTUN_E_INVAL);
  ck_assert_int_eq(revtun_options_set_module_path(o, TEST_MODULE_DIR), REVTUN_OK);
  h = tu_new_opts("rep_dynmod_name", o, 0);
  revtun_options_free(o);
  revtun_free(h);
  assert_file("reporter.log", "new reporter.log\nserver_initialized\ndestroy\n");
  unsetenv("ENVOY_DYNAMIC_MODULES_SEARCH_PATH");
}
END_TEST

START_TEST(reporter_config_as_envoy_passes_it) {
  /* Struct -> compact JSON, keys in config order */
  revtun_t *h = tu_new("rep_dynmod_struct", &rec, 0);
  revtun_free(h);
  assert_file("reporter.log",
              "new {\"path\":\"reporter.log\",\"n\":3,\"on\":true,\"tags\":[\"a\",null]}\n"
              "server_initialized\ndestroy\n");
  unlink("reporter.log");
  h = tu_new("rep_dynmod_bytes", &rec, 0); /* BytesValue: raw bytes */
  revtun_free(h);
  assert_file("reporter.log", "new reporter.log\nserver_initialized\ndestroy\n");
}
END_TEST

START_TEST(tenant_isolation_reports_scoped_keys) {
  revtun_t *h = tu_new("rep_dynmod_isolation", &rec, 0);
  drive(h, "t1");
  revtun_free(h);
  assert_file("reporter.log", "new reporter.log\n"
                              "server_initialized\n"
                              "connected node=t1:n1 cluster=t1:c1 tenant=t1\n"
                              "connected node=t1:n2 cluster=t1:c1 tenant=t1\n"
                              "goaway node=t1:n2 cluster=t1:c1\n"
                              "disconnected node=t1:n2 cluster=t1:c1\n"
                              "disconnected node=t1:n1 cluster=t1:c1\n"
                              "destroy\n");
}
END_TEST

static const char *validate_error(const char *config) {
  static char err[1024];
  size_t len;
  uint8_t *cfg = tu_config(config, &len);
  ck_assert_int_eq(revtun_config_validate(cfg, len, NULL, err, sizeof(err)), REVTUN_E_CONFIG);
  free(cfg);
  ck_assert_str_eq(new_error(config), err);
  return err;
}

START_TEST(module_missing_a_mandatory_symbol) {
  setenv("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", TEST_BROKEN_MODULE_DIR, 1);
  size_t len;
  uint8_t *cfg = tu_config("rep_dynmod_broken", &len);
  char err[256];
  /* validation reads the config only: nothing is loaded */
  ck_assert_int_eq(revtun_config_validate(cfg, len, NULL, err, sizeof(err)), REVTUN_OK);
  free(cfg);
  ck_assert_str_eq(new_error("rep_dynmod_broken"),
                   "reporter_config: dynamic module '" TEST_BROKEN_MODULE_DIR
                   "/librevtun_broken_reporter.so' does not define "
                   "envoy_dynamic_module_on_reverse_tunnel_reporter_destroy, which a reverse "
                   "tunnel reporter module must");
  ck_assert(!module_resident(TEST_BROKEN_MODULE_DIR "/librevtun_broken_reporter.so"));
}
END_TEST

START_TEST(module_not_found_or_not_loadable_or_refusing) {
  const char *e = new_error("rep_dynmod_missing");
  ck_assert_msg(strncmp(e,
                        "reporter_config: dynamic module libno_such_revtun_module.so not found "
                        "in " TEST_MODULE_DIR "/libno_such_revtun_module.so nor in the "
                        "standard library paths (reporter_config: cannot load dynamic module "
                        "'libno_such_revtun_module.so': ",
                        strlen("reporter_config: dynamic module libno_such_revtun_module.so not "
                               "found in " TEST_MODULE_DIR "/libno_such_revtun_module.so nor in "
                               "the standard library paths (reporter_config: cannot load dynamic "
                               "module 'libno_such_revtun_module.so': ")) == 0,
                "%s", e);
  /* a file that exists under the search path but is no module: its error,
   * no fallback to the library search */
  FILE *f = fopen("libbad.so", "w");
  fputs("not an ELF file\n", f);
  fclose(f);
  setenv("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", tmpdir, 1);
  e = new_error("rep_dynmod_bad_elf");
  char want[512];
  snprintf(want, sizeof(want),
           "reporter_config: cannot load dynamic module '%s/libbad.so': ", tmpdir);
  ck_assert_msg(strncmp(e, want, strlen(want)) == 0, "%s", e);
  /* the module refuses its config (reporter_new returns NULL) */
  setenv("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", TEST_MODULE_DIR, 1);
  ck_assert_str_eq(
      new_error("rep_dynmod_rejected"),
      "reporter_config: envoy_dynamic_module_on_reverse_tunnel_reporter_new in '" TEST_MODULE_DIR
      "/" MODULE "' returned NULL (the module rejected its config)");
  ck_assert(!module_resident(MODULE_PATH));
}
END_TEST

START_TEST(bad_reporter_configs) {
  ck_assert_str_eq(validate_error("rep_dynmod_no_module_config"),
                   "reporter_config: dynamic_module_config is required");
  ck_assert_str_eq(validate_error("rep_dynmod_no_name"),
                   "reporter_config: dynamic_module_config needs a name or module.local.filename");
  ck_assert_str_eq(validate_error("rep_dynmod_inline"),
                   "reporter_config: dynamic_module_config.module must be local.filename (inline "
                   "bytes and environment variables are not supported)");
  ck_assert_str_eq(validate_error("rep_dynmod_wrong_type"),
                   "reporter_config '" DYNMOD_NAME "': typed_config must be "
                   "envoy.extensions.bootstrap.reverse_tunnel.reporter.dynamic_modules.v3."
                   "DynamicModuleReverseTunnelReporter (got "
                   "type.googleapis.com/google.protobuf.StringValue)");
  ck_assert_str_eq(
      validate_error("rep_unknown"),
      "reporter_config.name 'nope.reporter' is not a known reporter (built in: " DYNMOD_NAME
      "; hosts add theirs with revtun_reporter_register)");
}
END_TEST

/* ------------------------------------------------------------ host path */

static char host_log[2048];
static int host_create(const char *type_url, const uint8_t *cfg, size_t len, void *user,
                       void **instance, char *err, size_t errlen) {
  (void)err, (void)errlen;
  snprintf(host_log + strlen(host_log), sizeof(host_log) - strlen(host_log), "create %s %.*s\n",
           type_url, (int)len - 2, (const char *)cfg + 2);
  *instance = user;
  return REVTUN_OK;
}
static void host_event(void *instance, const revtun_event_t *ev) {
  ck_assert_ptr_eq(instance, host_log);
  snprintf(host_log + strlen(host_log), sizeof(host_log) - strlen(host_log), "%s %s\n",
           revtun_event_kind_name(revtun_event_kind(ev)), revtun_event_node_id(ev, NULL));
}
static void host_destroy(void *instance) {
  ck_assert_ptr_eq(instance, host_log);
  strcat(host_log, "destroy\n");
}

START_TEST(host_reporter_chosen_by_name) {
  host_log[0] = '\0';
  revtun_options_t *o;
  ck_assert_int_eq(revtun_options_new(&o), REVTUN_OK);
  tu_options(o, &rec);
  ck_assert_int_eq(
      revtun_reporter_register(o, "test.reporter", host_create, host_event, host_destroy, host_log),
      REVTUN_OK);
  revtun_t *h = tu_new_opts("rep_host", o, 0);
  drive(h, NULL);
  revtun_free(h);
  ck_assert_str_eq(host_log, "create type.googleapis.com/google.protobuf.StringValue host-config\n"
                             "server_initialized \n"
                             "connected n1\n"
                             "connected n2\n"
                             "goaway n2\n"
                             "disconnected n2\n"
                             "disconnected n1\n"
                             "destroy\n");
  /* a host factory under the built-in's name takes its place */
  host_log[0] = '\0';
  ck_assert_int_eq(
      revtun_reporter_register(o, DYNMOD_NAME, host_create, host_event, host_destroy, host_log),
      REVTUN_OK);
  setenv("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", "/nonexistent", 1);
  h = tu_new_opts("rep_dynmod_name", o, 0);
  revtun_free(h);
  ck_assert_ptr_nonnull(strstr(host_log, "create type.googleapis.com/envoy.extensions.bootstrap."
                                         "reverse_tunnel.reporter.dynamic_modules.v3."
                                         "DynamicModuleReverseTunnelReporter "));
  ck_assert(!module_resident(MODULE_PATH));
  revtun_options_free(o);
}
END_TEST

/* Last: with do_not_close the module stays mapped for the rest of the
 * process (RTLD_NODELETE), as Envoy's do_not_close promises. */
START_TEST(do_not_close_keeps_the_module_mapped) {
  revtun_t *h = tu_new("rep_dynmod_do_not_close", &rec, 0);
  revtun_free(h);
  assert_file("reporter.log", "new reporter.log\nserver_initialized\ndestroy\n");
  ck_assert(module_resident(MODULE_PATH));
  /* loading it again reuses the resident object */
  unlink("reporter.log");
  h = tu_new("rep_dynmod_name", &rec, 0);
  revtun_free(h);
  assert_file("reporter.log", "new reporter.log\nserver_initialized\ndestroy\n");
}
END_TEST

int main(void) {
  Suite *s = suite_create("reporter");
  TCase *t = tcase_create("reporters");
  tcase_add_checked_fixture(t, enter_tmpdir, leave_tmpdir);
  tcase_add_test(t, dynamic_module_by_name_called_in_order_then_unloaded);
  tcase_add_test(t, dynamic_module_by_file_and_by_type);
  tcase_add_test(t, reporter_config_as_envoy_passes_it);
  tcase_add_test(t, tenant_isolation_reports_scoped_keys);
  tcase_add_test(t, module_missing_a_mandatory_symbol);
  tcase_add_test(t, module_not_found_or_not_loadable_or_refusing);
  tcase_add_test(t, bad_reporter_configs);
  tcase_add_test(t, host_reporter_chosen_by_name);
  tcase_add_test(t, do_not_close_keeps_the_module_mapped);
  suite_add_tcase(s, t);
  return tu_run(s);
}
