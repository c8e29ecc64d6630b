/* Stand-in for IDF's generated sdkconfig.h: the target backend_esp32.c checks (an original ESP32). */
#pragma once

#define CONFIG_IDF_TARGET "esp32"
#define CONFIG_IDF_TARGET_ESP32 1
