/*
 * lockstep_aead backend for ESP32-family chips on ESP-IDF v6.0 (the version
 * Moddable SDK 8.x builds with). IDF v6 ships mbedTLS 4 / TF-PSA-Crypto 1.0,
 * which no longer exposes mbedtls_aes_* or mbedtls_md_*; this file uses only
 * APIs that IDF v6.0 itself documents and uses:
 *
 * - AES-256-CBC on the AES accelerator:
 *     esp_aes_init, esp_aes_setkey, esp_aes_crypt_cbc, esp_aes_free, ESP_AES_ENCRYPT/DECRYPT
 *     from "aes/esp_aes.h" = components/mbedtls/port/include/aes/esp_aes.h
 *     (mode constants from components/esp_hal_security/include/hal/aes_types.h).
 * - HMAC-SHA-512 through PSA Crypto, which IDF v6 routes to the SHA accelerator
 *   (components/mbedtls/port/psa_driver/esp_mac/psa_crypto_driver_esp_hmac_transparent.c,
 *   when CONFIG_MBEDTLS_HARDWARE_SHA and SOC_SHA_SUPPORT_SHA512; otherwise TF-PSA's
 *   software SHA-512):
 *     psa_import_key, psa_mac_sign_setup, psa_mac_update, psa_mac_sign_finish,
 *     psa_mac_abort, psa_destroy_key from "psa/crypto.h" (TF-PSA-Crypto,
 *     components/mbedtls/mbedtls/tf-psa-crypto/include/psa/crypto.h). IDF calls
 *     psa_crypto_init() at startup (components/mbedtls/port/esp_psa_crypto_init.c);
 *     calling it again is allowed and cheap, so we do, once.
 * - X25519 and HKDF-SHA-512 through PSA (at the end of this file).
 * - Random bytes from the hardware RNG:
 *     esp_fill_random from "esp_random.h" = components/esp_hw_support/include/esp_random.h.
 *     As that header notes, the output is truly random only while the RF
 *     subsystem (Wi-Fi/BT) or bootloader_random_enable() supplies entropy; a
 *     Lockstep device always runs Wi-Fi before it needs a random IV.
 *
 * Wiring (manifest.json, esp32 platform): { "idf": "mbedtls" } and
 * { "idf": "esp_hw_support" } link the components; the include folders of
 * their headers are listed under "modules" as trailing-slash entries, since
 * Moddable gives module C files only components/mbedtls/mbedtls/include.
 */
/* Moddable compiles module C with -Wno-implicit-function-declaration; in this
 * file a call to an undeclared (e.g. misspelled) IDF function is an error. */
#pragma GCC diagnostic error "-Wimplicit-function-declaration"

/*
 * The mbedTLS / TF-PSA-Crypto configuration IDF v6.0 builds its library with
 * (components/mbedtls/CMakeLists.txt: MBEDTLS_CONFIG_FILE="mbedtls/esp_config.h"
 * on every mbedTLS target, TF_PSA_CRYPTO_USER_CONFIG_FILE "mbedtls/esp_config.h"
 * through set_config_files_compile_definitions). Moddable's esp32 build passes
 * neither to module C files; without them psa/crypto.h falls back to
 * TF-PSA-Crypto's default configuration and psa_mac_operation_t gets another
 * layout than the library's (memory corruption on the chip). The values cannot
 * be compared by the preprocessor, so a build that sets them itself is refused
 * rather than trusted. tools/esp32-check checks these strings against IDF's
 * CMakeLists.txt and the structure sizes against the library's view.
 */
#if defined(MBEDTLS_CONFIG_FILE) || defined(TF_PSA_CRYPTO_USER_CONFIG_FILE) || \
	defined(TF_PSA_CRYPTO_CONFIG_FILE) || defined(MBEDTLS_USER_CONFIG_FILE)
#error "lockstep_aead: an mbedTLS/TF-PSA-Crypto config macro is already set; this file sets IDF v6.0's (mbedtls/esp_config.h) and cannot check another value"
#endif
#define MBEDTLS_CONFIG_FILE "mbedtls/esp_config.h"
#define TF_PSA_CRYPTO_USER_CONFIG_FILE "mbedtls/esp_config.h"

#include <string.h>

#include "sdkconfig.h"
#include "esp_idf_version.h"
#include "soc/soc_caps.h"
#include "aes/esp_aes.h"
#include "psa/crypto.h"
#include "psa_crypto_driver_esp_hmac_transparent_contexts.h"
#include "esp_random.h"

#include "lockstep_aead_backend.h"

#if ESP_IDF_VERSION_MAJOR != 6 || ESP_IDF_VERSION_MINOR != 0
#error "lockstep_aead: backend_esp32.c is checked against ESP-IDF v6.0 only (docs/NATIVE.md); check it again for another version"
#endif
#if !defined(CONFIG_IDF_TARGET_ESP32) && !defined(CONFIG_IDF_TARGET_ESP32S3) && \
	!defined(CONFIG_IDF_TARGET_ESP32C3) && !defined(CONFIG_IDF_TARGET_ESP32C6)
#error "lockstep_aead: checked on esp32, esp32s3, esp32c3 and esp32c6 only (tools/esp32-check)"
#endif
#if !SOC_AES_SUPPORTED
#error "lockstep_aead: this chip has no AES accelerator; build with the mbedTLS backend instead"
#endif
/* esp_config.h was read (its guard), and by TF-PSA-Crypto 1.x. */
#if !defined(ESP_CONFIG_H)
#error "lockstep_aead: psa/crypto.h did not read IDF's mbedtls/esp_config.h"
#endif
#if !defined(TF_PSA_CRYPTO_VERSION_MAJOR) || TF_PSA_CRYPTO_VERSION_MAJOR != 1
#error "lockstep_aead: expected TF-PSA-Crypto 1.x (IDF v6.0)"
#endif
#if !defined(PSA_WANT_ALG_HMAC) || !defined(PSA_WANT_ALG_SHA_512) || !defined(PSA_WANT_KEY_TYPE_HMAC)
#error "lockstep_aead: IDF's PSA configuration lacks HMAC-SHA-512"
#endif

_Static_assert(PSA_HASH_LENGTH(PSA_ALG_SHA_512) == LOCKSTEP_SHA512_BYTES, "SHA-512 digest size");
_Static_assert(PSA_MAC_LENGTH(PSA_KEY_TYPE_HMAC, LOCKSTEP_HMAC_KEY_BYTES * 8, PSA_ALG_HMAC(PSA_ALG_SHA_512)) == LOCKSTEP_SHA512_BYTES,
	"HMAC-SHA-512 MAC size");
_Static_assert(sizeof(uint32_t) * 4 == LOCKSTEP_AES_BLOCK_BYTES, "one AES block in four 32-bit words");
#if defined(ESP_HMAC_TRANSPARENT_DRIVER_ENABLED) && !defined(LOCKSTEP_SIZE_PROBE)
/* With the SHA accelerator, IDF routes HMAC to its transparent driver, whose
 * context lives inside psa_mac_operation_t: the headers we see must make room
 * for it, as those of IDF's mbedTLS fork do (upstream TF-PSA-Crypto's do not).
 * tools/esp32-check defines LOCKSTEP_SIZE_PROBE only in its size probe, so it
 * can print the sizes when this fails. */
_Static_assert(sizeof(psa_driver_mac_context_t) >= sizeof(esp_hmac_transparent_operation_t),
	"psa_mac_operation_t has no room for IDF's HMAC driver context: TF-PSA-Crypto headers without IDF's driver contexts");
#endif

/* esp_aes_crypt_cbc reads and writes its buffers as 32-bit words on chips
 * without AES DMA (components/mbedtls/port/aes/esp_aes.c), and Xtensa faults
 * on unaligned word access, while XS hands us views at any byte offset. */
static int is_word_aligned(const void *pointer)
{
	return ((uintptr_t)pointer & 3) == 0;
}

int lockstep_backend_aes256_cbc(int encrypt, const uint8_t key[LOCKSTEP_AES_KEY_BYTES],
	const uint8_t iv[LOCKSTEP_AES_BLOCK_BYTES], const uint8_t *input, uint8_t *output, size_t length)
{
	esp_aes_context context;
	uint32_t chain[LOCKSTEP_AES_BLOCK_BYTES / 4];   /* word-aligned IV, advanced by esp_aes_crypt_cbc */
	uint32_t bounce[LOCKSTEP_AES_BLOCK_BYTES / 4];  /* word-aligned block for unaligned views */
	const int mode = encrypt ? ESP_AES_ENCRYPT : ESP_AES_DECRYPT;
	int status;

	if (length == 0 || (length % LOCKSTEP_AES_BLOCK_BYTES) != 0)
		return -1;
	esp_aes_init(&context);
	status = esp_aes_setkey(&context, key, LOCKSTEP_AES_KEY_BYTES * 8);
	memcpy(chain, iv, sizeof(chain));
	if (status == 0 && is_word_aligned(input) && is_word_aligned(output)) {
		status = esp_aes_crypt_cbc(&context, mode, length, (unsigned char *)chain, input, output);
	}
	else if (status == 0) {
		size_t offset;
		for (offset = 0; status == 0 && offset < length; offset += LOCKSTEP_AES_BLOCK_BYTES) {
			memcpy(bounce, input + offset, sizeof(bounce));
			status = esp_aes_crypt_cbc(&context, mode, sizeof(bounce), (unsigned char *)chain,
				(const unsigned char *)bounce, (unsigned char *)bounce);
			memcpy(output + offset, bounce, sizeof(bounce));
		}
	}
	esp_aes_free(&context);
	lockstep_wipe(&context, sizeof(context));
	lockstep_wipe(chain, sizeof(chain));
	lockstep_wipe(bounce, sizeof(bounce));
	return status;
}

static int psa_ready(void)
{
	static int initialized = 0;
	if (!initialized)
		initialized = (psa_crypto_init() == PSA_SUCCESS);
	return initialized;
}

int lockstep_backend_hmac_sha512(const uint8_t key[LOCKSTEP_HMAC_KEY_BYTES],
	const lockstep_span *parts, size_t count, uint8_t mac[LOCKSTEP_SHA512_BYTES])
{
	const psa_algorithm_t algorithm = PSA_ALG_HMAC(PSA_ALG_SHA_512);
	psa_key_attributes_t attributes = PSA_KEY_ATTRIBUTES_INIT;
	psa_mac_operation_t operation = PSA_MAC_OPERATION_INIT;
	psa_key_id_t key_id = PSA_KEY_ID_NULL;
	psa_status_t status;
	size_t mac_length = 0;
	size_t i;

	if (!psa_ready())
		return -1;
	/* A volatile key lives in PSA's key store only for this call; psa_destroy_key wipes it. */
	psa_set_key_type(&attributes, PSA_KEY_TYPE_HMAC);
	psa_set_key_bits(&attributes, LOCKSTEP_HMAC_KEY_BYTES * 8);
	psa_set_key_usage_flags(&attributes, PSA_KEY_USAGE_SIGN_MESSAGE);
	psa_set_key_algorithm(&attributes, algorithm);
	psa_set_key_lifetime(&attributes, PSA_KEY_LIFETIME_VOLATILE);
	status = psa_import_key(&attributes, key, LOCKSTEP_HMAC_KEY_BYTES, &key_id);
	psa_reset_key_attributes(&attributes);
	if (status != PSA_SUCCESS)
		return -1;

	status = psa_mac_sign_setup(&operation, key_id, algorithm);
	for (i = 0; status == PSA_SUCCESS && i < count; i++) {
		if (parts[i].length)
			status = psa_mac_update(&operation, parts[i].data, parts[i].length);
	}
	if (status == PSA_SUCCESS)
		status = psa_mac_sign_finish(&operation, mac, LOCKSTEP_SHA512_BYTES, &mac_length);
	if (status != PSA_SUCCESS)
		psa_mac_abort(&operation);
	psa_destroy_key(key_id);
	return (status == PSA_SUCCESS && mac_length == LOCKSTEP_SHA512_BYTES) ? 0 : -1;
}

int lockstep_backend_random(uint8_t *output, size_t length)
{
	esp_fill_random(output, length);
	return 0;
}

/*
 * X25519 and HKDF-SHA-512 through PSA (TF-PSA-Crypto 1.0 in IDF v6.0, software:
 * no ESP32-family chip accelerates Curve25519 or HKDF; HKDF's HMAC-SHA-512
 * runs on the SHA accelerator when IDF routes it there):
 *   psa_import_key of a PSA_KEY_TYPE_ECC_KEY_PAIR(PSA_ECC_FAMILY_MONTGOMERY)
 *   255-bit volatile key (the 32 raw bytes; mbedtls_ecp_read_key clamps them,
 *   RFC 7748 §5), psa_export_public_key, psa_raw_key_agreement(PSA_ALG_ECDH),
 *   psa_key_derivation_setup/input_bytes/output_bytes/abort with
 *   PSA_ALG_HKDF(PSA_ALG_SHA_512), psa_destroy_key (which wipes the key slot).
 * All three PSA_WANT symbols are on by default in IDF v6.0 (TF-PSA-Crypto's
 * include/psa/crypto_config.h; IDF's esp_config.h does not undefine them, and
 * IDF v6.0 has no MBEDTLS_HKDF_C Kconfig option); the firmware's
 * hosts/moddable/sdkconfig/sdkconfig.defaults keeps the Kconfig options that
 * gate Curve25519 and ECDH on. A configuration without them stops the build here.
 */
#if !defined(PSA_WANT_ALG_HKDF)
#error "lockstep_aead: IDF's PSA configuration lacks PSA_WANT_ALG_HKDF (HKDF-SHA-512 for the DH rekey mode)"
#endif
#if !defined(PSA_WANT_ECC_MONTGOMERY_255)
#error "lockstep_aead: IDF's PSA configuration lacks PSA_WANT_ECC_MONTGOMERY_255 (X25519; keep CONFIG_MBEDTLS_ECP_DP_CURVE25519_ENABLED=y)"
#endif
#if !defined(PSA_WANT_ALG_ECDH)
#error "lockstep_aead: IDF's PSA configuration lacks PSA_WANT_ALG_ECDH (X25519 agreement; keep CONFIG_MBEDTLS_ECDH_C=y)"
#endif
#if !defined(PSA_WANT_KEY_TYPE_ECC_KEY_PAIR_IMPORT) || !defined(PSA_WANT_KEY_TYPE_ECC_KEY_PAIR_EXPORT)
#error "lockstep_aead: IDF's PSA configuration cannot import and export ECC key pairs"
#endif

#define X25519_KEY_TYPE PSA_KEY_TYPE_ECC_KEY_PAIR(PSA_ECC_FAMILY_MONTGOMERY)
/* (PSA_EXPORT_PUBLIC_KEY_OUTPUT_SIZE is an ECC-wide bound, 65 here: the export's length is checked at run time.) */
_Static_assert(PSA_RAW_KEY_AGREEMENT_OUTPUT_SIZE(X25519_KEY_TYPE, 255) == LOCKSTEP_X25519_BYTES, "X25519 shared secret size");

static psa_status_t import_x25519_private(const uint8_t private_key[LOCKSTEP_X25519_BYTES], psa_key_id_t *key_id)
{
	psa_key_attributes_t attributes = PSA_KEY_ATTRIBUTES_INIT;
	psa_status_t status;
	psa_set_key_type(&attributes, X25519_KEY_TYPE);
	psa_set_key_bits(&attributes, 255);
	psa_set_key_usage_flags(&attributes, PSA_KEY_USAGE_DERIVE);
	psa_set_key_algorithm(&attributes, PSA_ALG_ECDH);
	psa_set_key_lifetime(&attributes, PSA_KEY_LIFETIME_VOLATILE);
	status = psa_import_key(&attributes, private_key, LOCKSTEP_X25519_BYTES, key_id);
	psa_reset_key_attributes(&attributes);
	return status;
}

int lockstep_backend_x25519_public(const uint8_t private_key[LOCKSTEP_X25519_BYTES],
	uint8_t public_key[LOCKSTEP_X25519_BYTES])
{
	psa_key_id_t key_id = PSA_KEY_ID_NULL;
	psa_status_t status;
	size_t length = 0;

	if (!psa_ready())
		return -1;
	status = import_x25519_private(private_key, &key_id);
	if (status != PSA_SUCCESS)
		return -1;
	status = psa_export_public_key(key_id, public_key, LOCKSTEP_X25519_BYTES, &length);
	psa_destroy_key(key_id);
	return (status == PSA_SUCCESS && length == LOCKSTEP_X25519_BYTES) ? 0 : -1;
}

int lockstep_backend_x25519(const uint8_t private_key[LOCKSTEP_X25519_BYTES],
	const uint8_t peer_public_key[LOCKSTEP_X25519_BYTES], uint8_t shared[LOCKSTEP_X25519_BYTES])
{
	psa_key_id_t key_id = PSA_KEY_ID_NULL;
	psa_status_t status;
	size_t length = 0;

	if (!psa_ready())
		return -1;
	status = import_x25519_private(private_key, &key_id);
	if (status != PSA_SUCCESS)
		return -1;
	status = psa_raw_key_agreement(PSA_ALG_ECDH, key_id, peer_public_key, LOCKSTEP_X25519_BYTES,
		shared, LOCKSTEP_X25519_BYTES, &length);
	psa_destroy_key(key_id);
	if (status == PSA_SUCCESS && length == LOCKSTEP_X25519_BYTES)
		return 0;
	/* The builtin ECDH refuses a low-order peer key (mbedtls_ecp_check_pubkey) as an invalid argument. */
	return status == PSA_ERROR_INVALID_ARGUMENT ? LOCKSTEP_BACKEND_REFUSED : -1;
}

int lockstep_backend_hkdf_sha512(const lockstep_span *salt, const lockstep_span *ikm, const lockstep_span *info,
	uint8_t *output, size_t length)
{
	psa_key_derivation_operation_t operation = PSA_KEY_DERIVATION_OPERATION_INIT;
	psa_status_t status;

	if (!psa_ready() || length == 0 || length > LOCKSTEP_HKDF_SHA512_MAX_BYTES)
		return -1;
	/* RFC 5869 order, which PSA requires: salt, then the secret, then info. */
	status = psa_key_derivation_setup(&operation, PSA_ALG_HKDF(PSA_ALG_SHA_512));
	if (status == PSA_SUCCESS)
		status = psa_key_derivation_input_bytes(&operation, PSA_KEY_DERIVATION_INPUT_SALT, salt->data, salt->length);
	if (status == PSA_SUCCESS)
		status = psa_key_derivation_input_bytes(&operation, PSA_KEY_DERIVATION_INPUT_SECRET, ikm->data, ikm->length);
	if (status == PSA_SUCCESS)
		status = psa_key_derivation_input_bytes(&operation, PSA_KEY_DERIVATION_INPUT_INFO, info->data, info->length);
	if (status == PSA_SUCCESS)
		status = psa_key_derivation_output_bytes(&operation, output, length);
	/* abort wipes the PRK and the HMAC state in every case. */
	psa_key_derivation_abort(&operation);
	return status == PSA_SUCCESS ? 0 : -1;
}
