/* Where a companion program is: $envname if set, else beside the running
 * program (/proc/self/exe), else in the install directory given. */
#ifndef SIBLING_H
#define SIBLING_H
const char *sibling_path(const char *name, const char *envname, const char *bindir);
#endif
