/* tls_pki DIR: the PKI tests/e2e_tls.sh uses, made with the OpenSSL API
 * (tests/tls_certs.c) under DIR: ca.pem, other-ca.pem; upstream and
 * upstream2 (server certificates for localhost, the second one for the
 * SIGHUP reload); agents edge-1 and edge-2 (DNS SAN = node id), expired and
 * revoked (edge-1 too), stranger (edge-1 from other-ca); crl.pem revoking
 * "revoked". Each leaf is <name>.pem and <name>.key. */
#include <stdio.h>

#include "tls_certs.h"

#define DAY 86400

int main(int argc, char **argv) {
  const struct tc_leaf leaves[] = {
      {.name = "upstream",
       .cn = "upstream",
       .dns = {"localhost"},
       .not_before_s = -60,
       .not_after_s = DAY,
       .serial = 2,
       .server = 1},
      {.name = "upstream2",
       .cn = "upstream reloaded",
       .dns = {"localhost"},
       .not_before_s = -60,
       .not_after_s = DAY,
       .serial = 3,
       .server = 1},
      {.name = "edge-1",
       .cn = "edge-1",
       .dns = {"edge-1"},
       .not_before_s = -60,
       .not_after_s = DAY,
       .serial = 4},
      {.name = "edge-2",
       .cn = "edge-2",
       .dns = {"edge-2"},
       .not_before_s = -60,
       .not_after_s = DAY,
       .serial = 5},
      {.name = "expired",
       .cn = "edge-1",
       .dns = {"edge-1"},
       .not_before_s = -2 * DAY,
       .not_after_s = -DAY,
       .serial = 6},
      {.name = "revoked",
       .cn = "edge-1",
       .dns = {"edge-1"},
       .not_before_s = -60,
       .not_after_s = DAY,
       .serial = 7},
  };
  const struct tc_leaf stranger = {.name = "stranger",
                                   .cn = "edge-1",
                                   .dns = {"edge-1"},
                                   .not_before_s = -60,
                                   .not_after_s = DAY,
                                   .serial = 8};
  const uint64_t revoked[] = {7};
  struct tc_ca *ca, *other;
  int rc = 0;

  if (argc != 2) {
    fprintf(stderr, "usage: tls_pki DIR\n");
    return 2;
  }
  ca = tc_ca_new(argv[1], "ca", "revtun e2e CA");
  other = tc_ca_new(argv[1], "other-ca", "some other CA");
  if (!ca || !other)
    rc = 1;
  for (size_t i = 0; !rc && i < sizeof(leaves) / sizeof(leaves[0]); i++)
    rc = tc_issue(ca, argv[1], &leaves[i]) != 0;
  if (!rc)
    rc = tc_issue(other, argv[1], &stranger) != 0 || tc_crl(ca, argv[1], "crl", revoked, 1) != 0;
  tc_ca_free(ca);
  tc_ca_free(other);
  if (rc)
    fprintf(stderr, "tls_pki: cannot make the PKI in %s\n", argv[1]);
  return rc;
}
