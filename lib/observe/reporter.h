/* The reporter chosen by the config's reporter_config: a factory the host
 * registered, or the built-in dynamic-module reporter. */
#ifndef REVTUN_OBSERVE_REPORTER_H
#define REVTUN_OBSERVE_REPORTER_H

#include <stddef.h>

#include "base/mem.h"
#include "core/config.h"
#include "core/options.h"
#include "revtun/revtun.h"

/* Checks the reporter_config as revtun_new would build it; loads nothing. */
int rt_reporter_validate(const struct rt_mem *mem, const struct rt_config *cfg,
                         const revtun_options_t *opts, char *errbuf, size_t errbuf_len);
int rt_reporter_create(revtun_t *h, char *errbuf, size_t errbuf_len);
/* The report upcall: one reporter event to the reporter. */
void rt_reporter_event(revtun_t *h, const revtun_event_t *ev);
void rt_reporter_free(revtun_t *h);

#endif
