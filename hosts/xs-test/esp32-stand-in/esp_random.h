/* Stand-in for ESP-IDF v6.0's components/esp_hw_support/include/esp_random.h (see esp32_stand_in.c). */
#pragma once

#include <stddef.h>
#include <stdint.h>

uint32_t esp_random(void);
void esp_fill_random(void *buf, size_t len);
