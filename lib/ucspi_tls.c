#include "ucspi_tls.h"
#include "sanitize.h"

const char *const ucspi_tls_detail_names[] = {
  "SSL_PROTOCOL", "SSL_CIPHER", "SSL_TLS_SNI_SERVERNAME",
  "SSL_PEER_CERT_HASH", "SSL_PEER_CERT_SUBJECT", 0
};

int ucspi_tls_detail_cat(stralloc *details, const char *name, const char *value, size_t max)
{
  if (max > UCSPI_TLS_VALUE_MAX) max = UCSPI_TLS_VALUE_MAX;
  return stralloc_cats(details, name) && stralloc_catb(details, "=", 1)
      && sanitize_cats(details, value, max) && stralloc_catb(details, "", 1);
}

int ucspi_tls_details_end(stralloc *details)
{
  return stralloc_catb(details, "", 1);
}
