#include "sibling.h"
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *sibling_path(const char *name, const char *envname, const char *bindir)
{
  const char *env = getenv(envname);
  if (env && *env) return env;
  static char path[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
  if (n > 0) {
    path[n] = 0;
    char *slash = strrchr(path, '/');
    if (slash && (size_t)(slash - path) + 1 + strlen(name) < sizeof path) {
      strcpy(slash + 1, name);
      if (access(path, X_OK) == 0) return path;
    }
  }
  size_t len = strlen(bindir) + 1 + strlen(name) + 1;
  char *p = malloc(len);
  if (!p) return name;
  strcpy(p, bindir);
  strcat(p, "/");
  strcat(p, name);
  return p;
}
