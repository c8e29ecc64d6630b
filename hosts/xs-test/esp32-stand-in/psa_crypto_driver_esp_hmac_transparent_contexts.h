/* Stand-in for IDF's psa_crypto_driver_esp_hmac_transparent_contexts.h: the
 * stand-in has no SHA accelerator driver (ESP_HMAC_TRANSPARENT_DRIVER_ENABLED
 * is not defined), so there is no driver context to declare. */
#pragma once
