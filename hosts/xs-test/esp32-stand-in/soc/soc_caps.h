/* Stand-in for ESP-IDF's soc/soc_caps.h: the capability backend_esp32.c checks (an original ESP32: AES without DMA). */
#pragma once

#define SOC_AES_SUPPORTED 1
