/* TEMPORARY until the handshake acceptor lands (issue 4). */
#include "revtun_int.h"
void rt_acceptor_on_io(revtun_t *h, struct rt_fdent *e, int ev, revtun_time_ms_t now) { (void)h; (void)e; (void)ev; (void)now; }
void rt_acceptor_on_deadline(revtun_t *h, struct rt_fdent *e, revtun_time_ms_t now) { (void)h; (void)e; (void)now; }
void rt_acceptors_free_all(revtun_t *h) { (void)h; }
