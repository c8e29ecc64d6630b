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

/* TF-PSA-Crypto 1.0 splits mbedTLS 2.28's PSA_WANT_KEY_TYPE_ECC_KEY_PAIR into
 * _BASIC/_IMPORT/_EXPORT/_GENERATE/_DERIVE; 2.28's one symbol covers them all.
 * 2.28 derives its PSA_WANT_ symbols in config_psa.h (include-guarded; psa/crypto.h
 * includes it again later), so it is read here first. */
#include <mbedtls/config_psa.h>
#if defined(PSA_WANT_KEY_TYPE_ECC_KEY_PAIR)
#define PSA_WANT_KEY_TYPE_ECC_KEY_PAIR_IMPORT 1
#define PSA_WANT_KEY_TYPE_ECC_KEY_PAIR_EXPORT 1
#endif

/* tests/native-config-errors.test.ts: a configuration without one PSA_WANT_ symbol must stop the build. */
#if defined(LOCKSTEP_STAND_IN_WITHOUT_HKDF)
#undef PSA_WANT_ALG_HKDF
#endif
#if defined(LOCKSTEP_STAND_IN_WITHOUT_MONTGOMERY_255)
#undef PSA_WANT_ECC_MONTGOMERY_255
#endif
#if defined(LOCKSTEP_STAND_IN_WITHOUT_ECDH)
#undef PSA_WANT_ALG_ECDH
#endif

#endif
