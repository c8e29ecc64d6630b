/*
 * Stand-in for IDF's mbedtls/esp_config.h, which backend_esp32.c names as
 * MBEDTLS_CONFIG_FILE and TF_PSA_CRYPTO_USER_CONFIG_FILE. Here it keeps
 * Debian's mbedTLS 2.28 default configuration (whose psa_* calls the
 * backend uses are the same as TF-PSA-Crypto 1.0's) and states the version
 * the stand-in models. It has nothing to say about IDF's structure layouts:
 * tools/esp32-check checks those against the real headers.
 */
#ifndef ESP_CONFIG_H
#define ESP_CONFIG_H

#include <mbedtls/config.h>

#define TF_PSA_CRYPTO_VERSION_MAJOR 1

#endif
