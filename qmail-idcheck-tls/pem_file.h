/* The certificate and key files: opened and read by qmail-idcheck-tls before
 * the next program runs, bounded in size and checked for their PEM blocks
 * only (no cryptography: a session that never starts TLS stays cheap). The
 * descriptors stay open and go to qmail-idcheck-tls-io, which reads the same
 * files again from them, whatever happened to their names meanwhile, and
 * parses them when TLS starts. */
#ifndef PEM_FILE_H
#define PEM_FILE_H
#include <stddef.h>
#include "stralloc.h"

#define PEM_FILE_MAX (256u << 10)   /* a certificate chain is a few KB */

struct pem_file {
  int fd;           /* open, close-on-exec; -1 if none */
  char *s;          /* the contents while needed */
  size_t len;
};

/* Opens path and reads it: 1, or 0 with why set ("cannot read PATH: reason"). */
int pem_file_open(struct pem_file *f, const char *path, stralloc *why);
/* Reads an open file (from its start) into f: 1, or 0 with why set. */
int pem_file_read_fd(struct pem_file *f, int fd, const char *name, stralloc *why);
/* A "BEGIN CERTIFICATE" block. */
int pem_has_certificate(const struct pem_file *f);
/* An unencrypted private key block (PKCS#8, RSA or EC); 0 for an encrypted
 * one, which a service started per connection could not unlock. */
int pem_has_private_key(const struct pem_file *f);
/* Zeroes and frees the contents; the descriptor stays. */
void pem_file_wipe(struct pem_file *f);

#endif
