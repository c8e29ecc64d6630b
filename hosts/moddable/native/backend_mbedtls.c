/*
 * lockstep_aead backend for Linux hosts: mbedTLS as packaged by Debian
 * (libmbedtls-dev, 2.28 in bookworm; the AES/HMAC calls below are unchanged in 3.x),
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

/*
 * X25519 through mbedTLS 2.28's ECP module on MBEDTLS_ECP_DP_CURVE25519 (a
 * Montgomery ladder, mbedtls_ecp_mul), HKDF through mbedtls_hkdf. Scalars
 * are clamped here on a copy (RFC 7748 §5): mbedtls_ecp_check_privkey, which
 * mbedtls_ecp_mul runs, refuses an unclamped one. mbedtls_ecp_point_read_binary
 * masks the top bit of u (RFC 7748 §5); mbedtls_ecp_mul's mbedtls_ecp_check_pubkey
 * refuses the low-order u (0, 1, p − 1, p, p + 1 and the two order-8 points,
 * canonical or + p): that is LOCKSTEP_BACKEND_REFUSED.
 */
#include <mbedtls/ecp.h>
#include <mbedtls/hkdf.h>

static int random_for_blinding(void *unused, unsigned char *output, size_t length)
{
	(void)unused;
	return lockstep_backend_random(output, length);
}

static void clamp_x25519(uint8_t scalar[LOCKSTEP_X25519_BYTES])
{
	scalar[0] &= 248;
	scalar[31] &= 127;
	scalar[31] |= 64;
}

/* R = X25519(k, u) into `output`; u = NULL means the base point 9. */
static int x25519_mbedtls(const uint8_t private_key[LOCKSTEP_X25519_BYTES], const uint8_t *peer,
	uint8_t output[LOCKSTEP_X25519_BYTES])
{
	mbedtls_ecp_group group;
	mbedtls_ecp_point point, result;
	mbedtls_mpi scalar;
	uint8_t clamped[LOCKSTEP_X25519_BYTES];
	int status;

	mbedtls_ecp_group_init(&group);
	mbedtls_ecp_point_init(&point);
	mbedtls_ecp_point_init(&result);
	mbedtls_mpi_init(&scalar);
	memcpy(clamped, private_key, sizeof(clamped));
	clamp_x25519(clamped);

	status = mbedtls_ecp_group_load(&group, MBEDTLS_ECP_DP_CURVE25519);
	if (status == 0)
		status = mbedtls_mpi_read_binary_le(&scalar, clamped, sizeof(clamped));
	lockstep_wipe(clamped, sizeof(clamped));
	if (status == 0)
		status = peer == NULL ? mbedtls_ecp_copy(&point, &group.G)
			: mbedtls_ecp_point_read_binary(&group, &point, peer, LOCKSTEP_X25519_BYTES);
	if (status == 0) {
		status = mbedtls_ecp_mul(&group, &result, &scalar, &point, random_for_blinding, NULL);
		/* A low-order u: refused by the point check, or (should one pass it) the
		 * point at infinity whose Z has no inverse when the result is normalized. */
		if ((status == MBEDTLS_ERR_ECP_INVALID_KEY || status == MBEDTLS_ERR_MPI_NOT_ACCEPTABLE) && peer != NULL)
			status = LOCKSTEP_BACKEND_REFUSED;
	}
	if (status == 0)
		status = mbedtls_mpi_write_binary_le(&result.X, output, LOCKSTEP_X25519_BYTES);

	/* mbedtls_mpi_free zeroizes the limbs; the points and group are freed alike. */
	mbedtls_mpi_free(&scalar);
	mbedtls_ecp_point_free(&result);
	mbedtls_ecp_point_free(&point);
	mbedtls_ecp_group_free(&group);
	return status;
}

int lockstep_backend_x25519_public(const uint8_t private_key[LOCKSTEP_X25519_BYTES],
	uint8_t public_key[LOCKSTEP_X25519_BYTES])
{
	return x25519_mbedtls(private_key, NULL, public_key) == 0 ? 0 : -1;
}

int lockstep_backend_x25519(const uint8_t private_key[LOCKSTEP_X25519_BYTES],
	const uint8_t peer_public_key[LOCKSTEP_X25519_BYTES], uint8_t shared[LOCKSTEP_X25519_BYTES])
{
	int status = x25519_mbedtls(private_key, peer_public_key, shared);
	if (status == 0 || status == LOCKSTEP_BACKEND_REFUSED)
		return status;
	return -1;
}

int lockstep_backend_hkdf_sha512(const lockstep_span *salt, const lockstep_span *ikm, const lockstep_span *info,
	uint8_t *output, size_t length)
{
	const mbedtls_md_info_t *sha512 = mbedtls_md_info_from_type(MBEDTLS_MD_SHA512);
	static const unsigned char nothing[1] = { 0 };

	if (sha512 == NULL || length == 0 || length > LOCKSTEP_HKDF_SHA512_MAX_BYTES)
		return -1;
	/* mbedtls_hkdf wipes its PRK and HMAC state before returning. */
	return mbedtls_hkdf(sha512, salt->length ? salt->data : nothing, salt->length,
		ikm->length ? ikm->data : nothing, ikm->length,
		info->length ? info->data : nothing, info->length, output, length);
}
