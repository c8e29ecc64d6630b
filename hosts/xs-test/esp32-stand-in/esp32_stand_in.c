/*
 * A model of the ESP-IDF v6.0 calls backend_esp32.c makes, for the XS test
 * host on Linux: the esp_aes_* API of aes/esp_aes.h over mbedTLS software
 * AES, esp_fill_random over getrandom(2). PSA Crypto comes from Debian's
 * mbedTLS 2.28, which implements the same psa_* calls as TF-PSA-Crypto 1.0.
 *
 * It keeps the two properties of the real driver the backend must respect:
 * - esp_aes_crypt_cbc rejects a zero or non-multiple-of-16 length, and
 *   advances the IV it is given;
 * - on chips without AES DMA (the original ESP32) the driver reads and writes
 *   the buffers as 32-bit words, and Xtensa faults on an unaligned word
 *   access: this model aborts the process on an unaligned buffer, so a
 *   backend that forgets its bounce path fails the tests.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <mbedtls/aes.h>

#include "aes/esp_aes.h"
#include "esp_random.h"

static void require_word_aligned(const void *pointer, const char *what)
{
	if ((uintptr_t)pointer & 3) {
		fprintf(stderr, "esp32 stand-in: unaligned %s %p (LoadStoreAlignment on Xtensa)\n", what, pointer);
		abort();
	}
}

void esp_aes_init(esp_aes_context *ctx)
{
	memset(ctx, 0, sizeof(*ctx));
}

void esp_aes_free(esp_aes_context *ctx)
{
	if (ctx != NULL)
		memset(ctx, 0, sizeof(*ctx));
}

int esp_aes_setkey(esp_aes_context *ctx, const unsigned char *key, unsigned int keybits)
{
	if (keybits != 128 && keybits != 192 && keybits != 256)
		return ERR_ESP_AES_INVALID_KEY_LENGTH;
	ctx->key_bytes = (uint8_t)(keybits / 8);
	memcpy(ctx->key, key, ctx->key_bytes);
	ctx->key_in_hardware = 0;
	return 0;
}

int esp_aes_crypt_cbc(esp_aes_context *ctx, int mode, size_t length, unsigned char iv[16],
	const unsigned char *input, unsigned char *output)
{
	mbedtls_aes_context aes;
	int status;

	if (ctx == NULL || input == NULL || output == NULL || iv == NULL || ctx->key_bytes == 0)
		return -1;
	if (length == 0 || (length % 16) != 0)
		return ERR_ESP_AES_INVALID_INPUT_LENGTH;
	require_word_aligned(input, "input");
	require_word_aligned(output, "output");
	require_word_aligned(iv, "iv");
	mbedtls_aes_init(&aes);
	status = (mode == ESP_AES_ENCRYPT)
		? mbedtls_aes_setkey_enc(&aes, ctx->key, ctx->key_bytes * 8)
		: mbedtls_aes_setkey_dec(&aes, ctx->key, ctx->key_bytes * 8);
	if (status == 0)
		status = mbedtls_aes_crypt_cbc(&aes, mode == ESP_AES_ENCRYPT ? MBEDTLS_AES_ENCRYPT : MBEDTLS_AES_DECRYPT,
			length, iv, input, output);
	mbedtls_aes_free(&aes);
	return status;
}

uint32_t esp_random(void)
{
	uint32_t value = 0;
	esp_fill_random(&value, sizeof(value));
	return value;
}

void esp_fill_random(void *buf, size_t len)
{
	unsigned char *out = buf;
	while (len > 0) {
		ssize_t got = getrandom(out, len, 0);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			abort();
		}
		out += got;
		len -= (size_t)got;
	}
}
