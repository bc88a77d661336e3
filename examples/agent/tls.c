/*
 * revtun-downstream-agent: TLS on the handshake phase (--tls). The slot
 * dials, runs a TLS handshake as the client (verifying the upstream against
 * --ca and --sni, else the host of the --upstream it dialed; an IP is
 * checked against the certificate's IP SANs and sends no SNI), presents
 * --cert, sends the tunnel handshake and reads the answer inside TLS, then
 * abandons the session with a quiet shutdown: the parked tunnel is raw TCP,
 * its RPINGs outside TLS, as with Envoy's initiator.
 *
 * After the handoff the roles flip: the upstream opens a new session on the
 * raw stream as the TLS client, and the agent is its server, with --cert
 * and ALPN h2; the HTTP/2 session runs inside it. A cleartext HTTP/2
 * preface is refused. SIGHUP loads --ca, --cert and --key again for the
 * connections that start from then on.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "agent.h"

#ifdef EXAMPLES_TLS
#include <openssl/x509v3.h>
#endif

int agent_tls_setup(struct agent *ag, const char *const *upstreams, char *err, size_t errlen) {
  const struct config *c = &ag->cfg;
  unsigned char ip[16];
  uint16_t port;

  if (!c->tls)
    return 0;
  if (!c->ca || !c->cert != !c->key) {
    snprintf(err, errlen, "--tls needs --ca, and --cert with --key (or neither)");
    return -1;
  }
  if (c->sni && strlen(c->sni) >= sizeof(ag->tls_name[0])) {
    snprintf(err, errlen, "--sni: name too long");
    return -1;
  }
  for (unsigned i = 0; i < c->n_upstreams; i++) {
    char *name = ag->tls_name[i];

    if (c->sni) {
      snprintf(name, sizeof(ag->tls_name[i]), "%s", c->sni);
    } else if (hostport_split(upstreams[i], name, sizeof(ag->tls_name[i]), &port) < 0) {
      snprintf(err, errlen, "--upstream %s: no host to verify (use --sni)", upstreams[i]);
      return -1;
    }
    ag->tls_name_is_ip[i] = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;
  }
  if (!(ag->tls_ctx = tls_ctx_new(c->ca, c->cert, c->key, err, errlen)))
    return -1;
  if (c->cert && !(ag->tls_srv_ctx = tls_server_ctx_new(c->ca, c->cert, c->key, err, errlen)))
    return -1;
  return 0;
}

/* SIGHUP: new contexts for the connections dialed and taken from now on;
 * sessions in progress keep a reference to theirs. A file that does not
 * load keeps the previous ones. */
void agent_tls_reload(struct agent *ag) {
  const struct config *c = &ag->cfg;
  SSL_CTX *cl, *srv = NULL;
  char err[512];

  if (!c->tls) {
    logmsg("SIGHUP: no TLS configured, nothing to reload");
    return;
  }
  if (!(cl = tls_ctx_new(c->ca, c->cert, c->key, err, sizeof(err))) ||
      (c->cert && !(srv = tls_server_ctx_new(c->ca, c->cert, c->key, err, sizeof(err))))) {
    tls_ctx_free(cl);
    logmsg("SIGHUP: reload failed, keeping the previous certificates: %s", err);
    return;
  }
  tls_ctx_free(ag->tls_ctx);
  tls_ctx_free(ag->tls_srv_ctx);
  ag->tls_ctx = cl;
  ag->tls_srv_ctx = srv;
  logmsg("SIGHUP: CA, certificate and key reloaded");
}

void agent_tls_free(struct agent *ag) {
  tls_ctx_free(ag->tls_ctx);
  tls_ctx_free(ag->tls_srv_ctx);
  ag->tls_ctx = ag->tls_srv_ctx = NULL;
}

/* The upstream took the tunnel: its first bytes (a held partial RPING that
 * was data, then the rest of the read) must open a TLS session. 0, or -1
 * with the reason logged (the caller ends the tunnel). */
int tunnel_tls_begin(struct tunnel *t, const char *prefix, size_t plen, const uint8_t *rest,
                     size_t restlen) {
  const struct timeval deadline = {HANDSHAKE_TIMEOUT_S, 0};
  uint8_t first = plen ? (uint8_t)prefix[0] : restlen ? rest[0] : 0x16;

  if (first != 0x16) { /* a TLS handshake record starts with content type 22 */
    logmsg("tunnel %" PRIu64 ": cleartext after the handoff (%s), but --tls expects a TLS "
           "ClientHello: refused",
           t->conn_id, first == 'P' ? "an HTTP/2 preface" : "not a TLS record");
    return -1;
  }
  if (!(t->ssl = tls_server_new(t->ag->tls_srv_ctx, t->sk.fd, prefix, plen, rest, restlen))) {
    logmsg("tunnel %" PRIu64 ": cannot start TLS after the handoff", t->conn_id);
    return -1;
  }
  sock_set_filter(&t->sk, &tls_filter, t->ssl);
  t->tls_handshaking = 1;
  evtimer_add(t->kill_ev, &deadline); /* a stalled handshake ends the tunnel */
  return 0;
}

/* One step of the post-handoff handshake: 1 done (HTTP/2 may flow), 0 not
 * yet, -1 failed (logged; the caller ends the tunnel). */
int tunnel_tls_step(struct tunnel *t) {
  char why[384];
  int r = tls_handshake(t->ssl, why, sizeof(why));

  if (r == 2) {
    sock_want_write(&t->sk);
    return 0;
  }
  if (t->sk.writing) { /* no longer waiting for room */
    event_del(t->sk.wev);
    t->sk.writing = 0;
  }
  if (r == 0)
    return 0;
  if (r < 0) {
    logmsg("tunnel %" PRIu64 ": TLS after the handoff failed: %s", t->conn_id, why);
    return -1;
  }
  t->tls_handshaking = 0;
  evtimer_del(t->kill_ev);
  logmsg("tunnel %" PRIu64 ": %s after the handoff (ALPN %s), serving HTTP/2", t->conn_id,
         tls_version(t->ssl), tls_alpn_is_h2(t->ssl) ? "h2" : "none");
  return 1;
}

/* The slot's TCP connection is up: its TLS session, ready to handshake. */
int slot_tls_begin(struct slot *sl) {
#ifdef EXAMPLES_TLS
  struct agent *ag = sl->ag;
  SSL *ssl = tls_new(ag->tls_ctx, sl->sk.fd);
  const char *name = ag->tls_name[sl->up];
  X509_VERIFY_PARAM *vp;

  if (!ssl)
    return -1;
  vp = SSL_get0_param(ssl);
  if (ag->tls_name_is_ip[sl->up]
          ? X509_VERIFY_PARAM_set1_ip_asc(vp, name) != 1
          : (SSL_set1_host(ssl, name) != 1 || SSL_set_tlsext_host_name(ssl, name) != 1)) {
    tls_quiet_free(ssl);
    return -1;
  }
  sl->ssl = ssl;
  return 0;
#else
  (void)sl;
  return -1;
#endif
}

/* The answer parked the tunnel: the handshake-phase session is dropped
 * without a close_notify and the slot reads the raw stream from here on. */
void slot_tls_park(struct slot *sl) {
  tls_quiet_free(sl->ssl);
  sl->ssl = NULL;
  sock_set_filter(&sl->sk, NULL, NULL);
}
