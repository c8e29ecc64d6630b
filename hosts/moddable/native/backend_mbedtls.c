/*
 * lockstep_aead backend for Linux hosts: mbedTLS as packaged by Debian
 * (libmbedtls-dev, 2.28 in bookworm; the calls below are unchanged in 3.x),
 * and the kernel CSPRNG through getrandom(2).
 * Used by the XS test host (hosts/xs-test) and the Moddable Linux simulator.
 *
 * Every context is freed (mbedtls_*_free zeroizes it) and every IV copy wiped
 * on every path, as lockstep_aead_backend.h requires.
 */
#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include <mbedtls/aes.h>
#include <mbedtls/md.h>

#include "lockstep_aead_backend.h"

int lockstep_backend_aes256_cbc(int encrypt, const uint8_t key[LOCKSTEP_AES_KEY_BYTES],
	const uint8_t iv[LOCKSTEP_AES_BLOCK_BYTES], const uint8_t *input, uint8_t *output, size_t length)
{
	mbedtls_aes_context context;
	unsigned char chain[LOCKSTEP_AES_BLOCK_BYTES];
	int status;

	if (length == 0 || (length % LOCKSTEP_AES_BLOCK_BYTES) != 0)
		return -1;
	mbedtls_aes_init(&context);
	status = encrypt
		? mbedtls_aes_setkey_enc(&context, key, LOCKSTEP_AES_KEY_BYTES * 8)
		: mbedtls_aes_setkey_dec(&context, key, LOCKSTEP_AES_KEY_BYTES * 8);
	if (status == 0) {
		/* mbedtls_aes_crypt_cbc advances the IV it is given: hand it a copy. */
		memcpy(chain, iv, sizeof(chain));
		status = mbedtls_aes_crypt_cbc(&context, encrypt ? MBEDTLS_AES_ENCRYPT : MBEDTLS_AES_DECRYPT,
			length, chain, input, output);
		lockstep_wipe(chain, sizeof(chain));
	}
	mbedtls_aes_free(&context);
	return status;
}

int lockstep_backend_hmac_sha512(const uint8_t key[LOCKSTEP_HMAC_KEY_BYTES],
	const lockstep_span *parts, size_t count, uint8_t mac[LOCKSTEP_SHA512_BYTES])
{
	const mbedtls_md_info_t *sha512 = mbedtls_md_info_from_type(MBEDTLS_MD_SHA512);
	mbedtls_md_context_t context;
	size_t i;
	int status;

	if (sha512 == NULL)
		return -1;
	mbedtls_md_init(&context);
	status = mbedtls_md_setup(&context, sha512, 1 /* HMAC */);
	if (status == 0)
		status = mbedtls_md_hmac_starts(&context, key, LOCKSTEP_HMAC_KEY_BYTES);
	for (i = 0; status == 0 && i < count; i++) {
		if (parts[i].length)
			status = mbedtls_md_hmac_update(&context, parts[i].data, parts[i].length);
	}
	if (status == 0)
		status = mbedtls_md_hmac_finish(&context, mac);
	mbedtls_md_free(&context);
	return status;
}

int lockstep_backend_random(uint8_t *output, size_t length)
{
	while (length > 0) {
		ssize_t got = getrandom(output, length, 0);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		output += got;
		length -= (size_t)got;
	}
	return 0;
}
