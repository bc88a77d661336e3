/* Test PKI made with the OpenSSL API at test time: a CA, certificates with
 * chosen SANs and validity (expired and not yet valid included, which the
 * `openssl req` command of OpenSSL 3.0 cannot make), and CRLs. Keys are
 * P-256. Files are PEM, written under a directory the caller owns. */
#ifndef REVTUN_TLS_CERTS_H
#define REVTUN_TLS_CERTS_H

#include <stdint.h>

struct tc_ca; /* a CA: certificate and key in memory, files on disk */

/* A self-signed CA named cn; writes <dir>/<name>.pem (its certificate). */
struct tc_ca *tc_ca_new(const char *dir, const char *name, const char *cn);
void tc_ca_free(struct tc_ca *ca);
const char *tc_ca_file(const struct tc_ca *ca);

struct tc_leaf {
  const char *name;   /* files <dir>/<name>.pem and <dir>/<name>.key */
  const char *cn;     /* subject CN */
  const char *dns[4]; /* DNS SANs, NULL-terminated */
  const char *uri[4]; /* URI SANs, NULL-terminated */
  long not_before_s;  /* validity relative to now, in seconds */
  long not_after_s;
  uint64_t serial;
  int server; /* extendedKeyUsage serverAuth (else clientAuth too) */
};

/* Issues a leaf certificate signed by ca; 0 on success. */
int tc_issue(struct tc_ca *ca, const char *dir, const struct tc_leaf *leaf);

/* A CRL of ca revoking the given serials, written to <dir>/<name>.pem. */
int tc_crl(struct tc_ca *ca, const char *dir, const char *name, const uint64_t *serials, size_t n);

/* <dir>/<name>.<ext> into buf. */
const char *tc_path(char *buf, size_t cap, const char *dir, const char *name, const char *ext);

#endif
