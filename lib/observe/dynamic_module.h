/* The built-in dynamic-module reporter (include/revtun/reporter_module.h):
 * envoy.extensions.reverse_tunnel.reporting_service.dynamic_modules. */
#ifndef REVTUN_OBSERVE_DYNAMIC_MODULE_H
#define REVTUN_OBSERVE_DYNAMIC_MODULE_H

#include <stddef.h>
#include <stdint.h>

#include "base/mem.h"
#include "revtun/revtun.h"

#define RT_DYNMOD_REPORTER_NAME "envoy.extensions.reverse_tunnel.reporting_service.dynamic_modules"
#define RT_DYNMOD_REPORTER_TYPE                                                                    \
  "envoy.extensions.bootstrap.reverse_tunnel.reporter.dynamic_modules.v3."                         \
  "DynamicModuleReverseTunnelReporter"

/* Decodes and checks the typed_config bytes; loads nothing. */
int rt_dynmod_validate(const struct rt_mem *m, const uint8_t *cfg, size_t len, char *errbuf,
                       size_t errbuf_len);
/* Loads the module, resolves its symbols and creates the module's reporter. */
int rt_dynmod_create(revtun_t *h, const uint8_t *cfg, size_t len, void **instance, char *errbuf,
                     size_t errbuf_len);
void rt_dynmod_event(void *instance, const revtun_event_t *ev);
void rt_dynmod_destroy(void *instance); /* destroy hook, then dlclose */

#endif
