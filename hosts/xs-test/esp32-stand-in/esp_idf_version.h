/* Stand-in for ESP-IDF's esp_idf_version.h: the version backend_esp32.c is checked against. */
#pragma once

#define ESP_IDF_VERSION_MAJOR 6
#define ESP_IDF_VERSION_MINOR 0
#define ESP_IDF_VERSION_PATCH 0
