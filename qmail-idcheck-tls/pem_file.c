#include "pem_file.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int fail(stralloc *why, const char *name, const char *reason)
{
  why->len = 0;
  if (!stralloc_cats(why, "cannot read ") || !stralloc_cats(why, name)
      || !stralloc_cats(why, ": ") || !stralloc_cats(why, reason))
    why->len = 0;
  return 0;
}

int pem_file_read_fd(struct pem_file *f, int fd, const char *name, stralloc *why)
{
  struct stat st;
  f->fd = fd;
  f->s = 0;
  f->len = 0;
  if (fstat(fd, &st) < 0) return fail(why, name, strerror(errno));
  if (!S_ISREG(st.st_mode)) return fail(why, name, "not a regular file");
  if (st.st_size > (off_t)PEM_FILE_MAX) return fail(why, name, "larger than 256 KB");
  /* one byte more than the size, to see a file that grew meanwhile */
  size_t cap = (size_t)st.st_size + 1;
  f->s = malloc(cap);
  if (!f->s) return fail(why, name, "out of memory");
  while (f->len < cap) {
    ssize_t n = pread(fd, f->s + f->len, cap - f->len, (off_t)f->len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      pem_file_wipe(f);
      return fail(why, name, strerror(e));
    }
    if (n == 0) break;
    f->len += (size_t)n;
  }
  if (f->len == cap) { pem_file_wipe(f); return fail(why, name, "it changed while being read"); }
  return 1;
}

int pem_file_open(struct pem_file *f, const char *path, stralloc *why)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  f->fd = -1;
  f->s = 0;
  f->len = 0;
  if (fd < 0) return fail(why, path, strerror(errno));
  if (!pem_file_read_fd(f, fd, path, why)) {
    close(fd);
    f->fd = -1;
    return 0;
  }
  return 1;
}

static int has(const struct pem_file *f, const char *text)
{
  return f->s && memmem(f->s, f->len, text, strlen(text)) != 0;
}

int pem_has_certificate(const struct pem_file *f)
{
  return has(f, "-----BEGIN CERTIFICATE-----");
}

int pem_has_private_key(const struct pem_file *f)
{
  if (has(f, "-----BEGIN ENCRYPTED PRIVATE KEY-----") || has(f, "Proc-Type: 4,ENCRYPTED"))
    return 0;
  return has(f, "-----BEGIN PRIVATE KEY-----") || has(f, "-----BEGIN RSA PRIVATE KEY-----")
      || has(f, "-----BEGIN EC PRIVATE KEY-----");
}

void pem_file_wipe(struct pem_file *f)
{
  if (f->s) {
    explicit_bzero(f->s, f->len);
    free(f->s);
  }
  f->s = 0;
  f->len = 0;
}
