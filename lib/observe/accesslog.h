/* The access loggers built from the config's access_log entries: a factory
 * the host registered, or a built-in file, stdout or stderr logger. */
#ifndef REVTUN_OBSERVE_ACCESSLOG_H
#define REVTUN_OBSERVE_ACCESSLOG_H

#include <stdbool.h>
#include <stddef.h>

#include "base/mem.h"
#include "core/config.h"
#include "core/options.h"
#include "revtun/revtun.h"

/* Checks every entry as revtun_new would build it; opens nothing. */
int rt_loggers_validate(const struct rt_mem *mem, const struct rt_config *cfg,
                        const revtun_options_t *opts, char *errbuf, size_t errbuf_len);
/* Builds h->loggers; on failure what was built is left for rt_loggers_free. */
int rt_loggers_create(revtun_t *h, char *errbuf, size_t errbuf_len);
/* The record upcall: one lifecycle record to every logger. */
void rt_loggers_log(revtun_t *h, const revtun_event_t *ev);
/* The flush upcall: writes what is due (or everything, with force). */
void rt_loggers_flush(revtun_t *h, bool force);
void rt_loggers_free(revtun_t *h);

#endif
