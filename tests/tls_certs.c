/* See tls_certs.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "tls_certs.h"

struct tc_ca {
  X509 *cert;
  EVP_PKEY *key;
  char file[512];
};

const char *tc_path(char *buf, size_t cap, const char *dir, const char *name, const char *ext) {
  snprintf(buf, cap, "%s/%s.%s", dir, name, ext);
  return buf;
}

static EVP_PKEY *new_key(void) { return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"); }

static int write_pem(const char *path, X509 *cert, EVP_PKEY *key, X509_CRL *crl) {
  FILE *f = fopen(path, "w");
  if (!f)
    return -1;
  int ok = 1;
  if (cert)
    ok = PEM_write_X509(f, cert);
  if (ok && key)
    ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
  if (ok && crl)
    ok = PEM_write_X509_CRL(f, crl);
  return fclose(f) == 0 && ok ? 0 : -1;
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
  X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
  if (!ext)
    return -1;
  int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return ok ? 0 : -1;
}

static X509 *new_cert(EVP_PKEY *key, const char *cn, uint64_t serial, long nb, long na) {
  X509 *c = X509_new();
  if (!c)
    return NULL;
  X509_set_version(c, 2);
  ASN1_INTEGER_set_uint64(X509_get_serialNumber(c), serial);
  X509_gmtime_adj(X509_getm_notBefore(c), nb);
  X509_gmtime_adj(X509_getm_notAfter(c), na);
  X509_set_pubkey(c, key);
  X509_NAME *name = X509_get_subject_name(c);
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"revtun tests", -1, -1,
                             0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
  return c;
}

struct tc_ca *tc_ca_new(const char *dir, const char *name, const char *cn) {
  struct tc_ca *ca = calloc(1, sizeof(*ca));
  if (!ca || !(ca->key = new_key()) || !(ca->cert = new_cert(ca->key, cn, 1, -3600, 30L * 86400)) ||
      !X509_set_issuer_name(ca->cert, X509_get_subject_name(ca->cert)) ||
      add_ext(ca->cert, ca->cert, NID_basic_constraints, "critical,CA:TRUE") ||
      add_ext(ca->cert, ca->cert, NID_key_usage, "critical,keyCertSign,cRLSign") ||
      add_ext(ca->cert, ca->cert, NID_subject_key_identifier, "hash") ||
      !X509_sign(ca->cert, ca->key, EVP_sha256()) ||
      write_pem(tc_path(ca->file, sizeof(ca->file), dir, name, "pem"), ca->cert, NULL, NULL)) {
    tc_ca_free(ca);
    return NULL;
  }
  return ca;
}

void tc_ca_free(struct tc_ca *ca) {
  if (!ca)
    return;
  X509_free(ca->cert);
  EVP_PKEY_free(ca->key);
  free(ca);
}

const char *tc_ca_file(const struct tc_ca *ca) { return ca->file; }

int tc_issue(struct tc_ca *ca, const char *dir, const struct tc_leaf *l) {
  EVP_PKEY *key = new_key();
  X509 *c = key ? new_cert(key, l->cn, l->serial, l->not_before_s, l->not_after_s) : NULL;
  int rc = -1;
  char san[1024] = "", path[512];
  size_t n = 0;
  for (int i = 0; l->dns[i] && i < 4; i++)
    n += (size_t)snprintf(san + n, sizeof(san) - n, "%sDNS:%s", n ? "," : "", l->dns[i]);
  for (int i = 0; l->uri[i] && i < 4; i++)
    n += (size_t)snprintf(san + n, sizeof(san) - n, "%sURI:%s", n ? "," : "", l->uri[i]);
  if (c && X509_set_issuer_name(c, X509_get_subject_name(ca->cert)) &&
      (!n || !add_ext(c, ca->cert, NID_subject_alt_name, san)) &&
      !add_ext(c, ca->cert, NID_basic_constraints, "critical,CA:FALSE") &&
      !add_ext(c, ca->cert, NID_key_usage, "critical,digitalSignature") &&
      !add_ext(c, ca->cert, NID_ext_key_usage,
               l->server ? "serverAuth" : "clientAuth,serverAuth") &&
      !add_ext(c, ca->cert, NID_authority_key_identifier, "keyid") &&
      X509_sign(c, ca->key, EVP_sha256()) &&
      !write_pem(tc_path(path, sizeof(path), dir, l->name, "pem"), c, NULL, NULL) &&
      !write_pem(tc_path(path, sizeof(path), dir, l->name, "key"), NULL, key, NULL))
    rc = 0;
  X509_free(c);
  EVP_PKEY_free(key);
  return rc;
}

int tc_crl(struct tc_ca *ca, const char *dir, const char *name, const uint64_t *serials, size_t n) {
  X509_CRL *crl = X509_CRL_new();
  int rc = -1;
  char path[512];
  if (!crl)
    return -1;
  ASN1_TIME *now = X509_gmtime_adj(NULL, -60), *next = X509_gmtime_adj(NULL, 86400);
  int ok = now && next && X509_CRL_set_version(crl, 1) &&
           X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca->cert)) &&
           X509_CRL_set1_lastUpdate(crl, now) && X509_CRL_set1_nextUpdate(crl, next);
  for (size_t i = 0; ok && i < n; i++) {
    X509_REVOKED *r = X509_REVOKED_new();
    ASN1_INTEGER *s = ASN1_INTEGER_new();
    ok = r && s && ASN1_INTEGER_set_uint64(s, serials[i]) && X509_REVOKED_set_serialNumber(r, s) &&
         X509_REVOKED_set_revocationDate(r, now) && X509_CRL_add0_revoked(crl, r);
    ASN1_INTEGER_free(s);
    if (!ok)
      X509_REVOKED_free(r);
  }
  if (ok && X509_CRL_sort(crl) && X509_CRL_sign(crl, ca->key, EVP_sha256()) &&
      !write_pem(tc_path(path, sizeof(path), dir, name, "pem"), NULL, NULL, crl))
    rc = 0;
  ASN1_TIME_free(now);
  ASN1_TIME_free(next);
  X509_CRL_free(crl);
  return rc;
}
