/*
 * libupstream-revtun — the dynamic-module reporter ABI.
 *
 * The built-in reporter `envoy.extensions.reverse_tunnel.reporting_service.dynamic_modules`
 * (config: envoy.extensions.bootstrap.reverse_tunnel.reporter.dynamic_modules.v3.
 * DynamicModuleReverseTunnelReporter) loads a shared object and calls the functions
 * below, which the MODULE defines. The names, argument order and buffer layout are
 * Envoy's (source/extensions/dynamic_modules/abi/abi.h and
 * source/extensions/bootstrap/reverse_tunnel/upstream_socket_interface/
 * dynamic_module_reporter.cc), so a reporter module built for Envoy loads here
 * unchanged, and a module built against this header loads in Envoy.
 *
 * Finding the module (as Envoy):
 *   1. dynamic_module_config.module.local.filename, when set;
 *   2. else <dir>/lib<name>.so when that file exists, where <dir> is the directory set
 *      with revtun_options_set_module_path(), else $ENVOY_DYNAMIC_MODULES_SEARCH_PATH
 *      (a file that exists but fails to load is an error; no further search; with
 *      neither set this step is skipped: the current directory is never searched);
 *   3. else lib<name>.so through dlopen's own search (LD_LIBRARY_PATH, ld.so.cache ...).
 * dlopen flags: RTLD_LAZY, RTLD_GLOBAL if load_globally else RTLD_LOCAL, and
 * RTLD_NODELETE with do_not_close. The handle is dlclose()d when the revtun_t is freed;
 * with do_not_close the object stays mapped.
 *
 * Symbols:
 *   envoy_dynamic_module_on_reverse_tunnel_reporter_new       mandatory
 *   envoy_dynamic_module_on_reverse_tunnel_reporter_destroy   mandatory
 *   envoy_dynamic_module_on_reverse_tunnel_server_initialized optional
 *   envoy_dynamic_module_on_reverse_tunnel_connected          optional
 *   envoy_dynamic_module_on_reverse_tunnel_disconnected       optional
 *   envoy_dynamic_module_on_reverse_tunnel_goaway             optional (revtun extension:
 *       Envoy's C++ reporter has reportGoAwayEvent, its module ABI does not yet)
 *   envoy_dynamic_module_on_program_init                      optional here (Envoy requires
 *       it): when present it is called once after a fresh load; NULL fails the load. The
 *       ABI version string it returns is logged, not compared: this is not Envoy.
 * A missing mandatory symbol makes revtun_new() fail with REVTUN_E_CONFIG naming the
 * symbol and the file.
 *
 * Calls (all on the thread that uses the revtun_t, never concurrently for one reporter):
 *   reporter_new(config)  once, from revtun_new(); config is reporter_config rendered as
 *       Envoy does: google.protobuf.Struct -> compact JSON; StringValue/BytesValue -> the
 *       raw bytes; any other type -> its serialized bytes; absent -> empty. A NULL return
 *       fails revtun_new() with REVTUN_E_CONFIG.
 *   server_initialized    once, when revtun_new() has finished (after the host's
 *                         own reporter callback saw it).
 *   connected(node, cluster, tenant)   a socket was registered;
 *   disconnected(node, cluster)        a socket died (any reason, including revtun_free);
 *   goaway(node, cluster)              the host reported an HTTP/2 GOAWAY (revtun_note_goaway).
 *       node and cluster are the tenant-scoped keys ("<tenant>:<id>") when
 *       enable_tenant_isolation is on, as Envoy reports them; tenant is the raw tenant.
 *   destroy               once, from revtun_free(), after the last event.
 * Buffers are views valid only during the call; they are not NUL-terminated.
 * Callbacks must not call back into libupstream-revtun.
 */
#ifndef REVTUN_REPORTER_MODULE_H
#define REVTUN_REPORTER_MODULE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Layout-identical to Envoy's envoy_dynamic_module_type_envoy_buffer. */
typedef struct revtun_module_buffer {
  const char *ptr;
  size_t length;
} revtun_module_buffer_t;

/* The module's own reporter object (Envoy:
 * envoy_dynamic_module_type_reverse_tunnel_reporter_module_ptr). */
typedef void *revtun_module_reporter_t;

revtun_module_reporter_t
envoy_dynamic_module_on_reverse_tunnel_reporter_new(revtun_module_buffer_t reporter_config);
void envoy_dynamic_module_on_reverse_tunnel_reporter_destroy(revtun_module_reporter_t reporter);
void envoy_dynamic_module_on_reverse_tunnel_server_initialized(revtun_module_reporter_t reporter);
void envoy_dynamic_module_on_reverse_tunnel_connected(revtun_module_reporter_t reporter,
                                                      revtun_module_buffer_t node_id,
                                                      revtun_module_buffer_t cluster_id,
                                                      revtun_module_buffer_t tenant_id);
void envoy_dynamic_module_on_reverse_tunnel_disconnected(revtun_module_reporter_t reporter,
                                                         revtun_module_buffer_t node_id,
                                                         revtun_module_buffer_t cluster_id);
void envoy_dynamic_module_on_reverse_tunnel_goaway(revtun_module_reporter_t reporter,
                                                   revtun_module_buffer_t node_id,
                                                   revtun_module_buffer_t cluster_id);
const char *envoy_dynamic_module_on_program_init(void);

/* The symbol names, for hosts that resolve them themselves. */
#define REVTUN_MODULE_SYM_REPORTER_NEW "envoy_dynamic_module_on_reverse_tunnel_reporter_new"
#define REVTUN_MODULE_SYM_REPORTER_DESTROY "envoy_dynamic_module_on_reverse_tunnel_reporter_destroy"
#define REVTUN_MODULE_SYM_SERVER_INITIALIZED                                                       \
  "envoy_dynamic_module_on_reverse_tunnel_server_initialized"
#define REVTUN_MODULE_SYM_CONNECTED "envoy_dynamic_module_on_reverse_tunnel_connected"
#define REVTUN_MODULE_SYM_DISCONNECTED "envoy_dynamic_module_on_reverse_tunnel_disconnected"
#define REVTUN_MODULE_SYM_GOAWAY "envoy_dynamic_module_on_reverse_tunnel_goaway"
#define REVTUN_MODULE_SYM_PROGRAM_INIT "envoy_dynamic_module_on_program_init"

#ifdef __cplusplus
}
#endif

#endif /* REVTUN_REPORTER_MODULE_H */
