/*
 * Stand-in for ESP-IDF v6.0's components/mbedtls/port/include/aes/esp_aes.h
 * (same names, types and prototypes for the calls backend_esp32.c makes), so
 * the XS test host can compile and run the ESP32 backend's own logic on Linux.
 * Implemented in esp32_stand_in.c over mbedTLS software AES. Not for firmware.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define ESP_AES_ENCRYPT 1
#define ESP_AES_DECRYPT 0
#define ERR_ESP_AES_INVALID_KEY_LENGTH -0x0020
#define ERR_ESP_AES_INVALID_INPUT_LENGTH -0x0022

typedef struct {
	uint8_t key_bytes;
	volatile uint8_t key_in_hardware;
	uint8_t key[32];
} esp_aes_context;

void esp_aes_init(esp_aes_context *ctx);
void esp_aes_free(esp_aes_context *ctx);
int esp_aes_setkey(esp_aes_context *ctx, const unsigned char *key, unsigned int keybits);
int esp_aes_crypt_cbc(esp_aes_context *ctx, int mode, size_t length, unsigned char iv[16],
	const unsigned char *input, unsigned char *output);
