// spread-pairing: a pairing policy for eva, written in C.
//
// For each prompt it pairs the best answer with the worst, the second best with the
// second worst, and so on: up to `pairs` pairs, each with a reward gap of at least
// `min-gap` (a pair of equal rewards teaches nothing and is never made). More than
// one pair per prompt uses more of the n answers that were paid for.
//
// The bindings (pairing.h, pairing.c, pairing_component_type.o) come from
// `eva-host plugin bindgen c --world pairing`; see build.sh.

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pairing.h"

static int64_t max_pairs = 2;
static double min_gap = 0.0;

static void set_text(pairing_string_t *out, const char *text) {
    // Returned strings are freed by the bindings after the call: always copies.
    pairing_string_dup(out, text);
}

static void field(eva_plugin_types_config_field_t *f, const char *name, eva_plugin_types_config_kind_t kind,
                  const char *default_value, const char *description) {
    set_text(&f->name, name);
    f->kind = kind;
    set_text(&f->default_value, default_value);
    set_text(&f->description, description);
}

void exports_eva_plugin_pair_describe(exports_eva_plugin_pair_metadata_t *ret) {
    set_text(&ret->name, "spread-pairing");
    set_text(&ret->version, "0.1.0");
    set_text(&ret->description, "Pairs the i-th best answer with the i-th worst, up to `pairs` pairs per prompt.");
    ret->config.len = 2;
    ret->config.ptr = malloc(2 * sizeof(eva_plugin_types_config_field_t));
    field(&ret->config.ptr[0], "pairs", EVA_PLUGIN_TYPES_CONFIG_KIND_INTEGER, "2", "most pairs per prompt");
    field(&ret->config.ptr[1], "min-gap", EVA_PLUGIN_TYPES_CONFIG_KIND_FLOAT, "0.0",
          "smallest reward gap of a pair");
}

static bool invalid_config(exports_eva_plugin_pair_plugin_error_t *err, const char *message) {
    err->tag = EVA_PLUGIN_TYPES_PLUGIN_ERROR_INVALID_CONFIG;
    set_text(&err->val.invalid_config, message);
    return false;
}

static bool key_is(const pairing_string_t *key, const char *name) {
    return key->len == strlen(name) && memcmp(key->ptr, name, key->len) == 0;
}

bool exports_eva_plugin_pair_configure(exports_eva_plugin_pair_list_config_entry_t *config,
                                       exports_eva_plugin_pair_plugin_error_t *err) {
    // The host has checked keys and kinds against `describe`; ranges are ours to check.
    char message[96];
    for (size_t i = 0; i < config->len; i++) {
        eva_plugin_types_config_entry_t *entry = &config->ptr[i];
        if (key_is(&entry->key, "pairs")) {
            int64_t value = entry->value.val.integer;
            if (value < 1 || value > 64) {
                snprintf(message, sizeof message, "pairs must be in 1..=64, not %lld", (long long)value);
                return invalid_config(err, message);
            }
            max_pairs = value;
        } else if (key_is(&entry->key, "min-gap")) {
            double value = entry->value.val.float_;
            if (value < 0.0) {
                snprintf(message, sizeof message, "min-gap must not be negative, not %g", value);
                return invalid_config(err, message);
            }
            min_gap = value;
        }
    }
    exports_eva_plugin_pair_list_config_entry_free(config);
    return true;
}

// Sorting indices by reward, best first; equal rewards keep the sampling order.
static const exports_eva_plugin_pair_response_t *sorting;

static int by_reward_desc(const void *a, const void *b) {
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    double ri = sorting[i].reward, rj = sorting[j].reward;
    if (ri != rj) return ri > rj ? -1 : 1;
    return i < j ? -1 : (i > j);
}

static void pair_one(const exports_eva_plugin_pair_prompt_responses_t *item,
                     exports_eva_plugin_pair_list_preference_t *ret) {
    size_t n = item->responses.len;
    ret->len = 0;
    ret->ptr = NULL;
    if (n < 2) return;
    uint32_t *order = malloc(n * sizeof(uint32_t));
    for (uint32_t i = 0; i < n; i++) order[i] = i;
    sorting = item->responses.ptr;
    qsort(order, n, sizeof(uint32_t), by_reward_desc);
    ret->ptr = malloc((size_t)max_pairs * sizeof(exports_eva_plugin_pair_preference_t));
    for (size_t k = 0; k < (size_t)max_pairs && k < n - 1 - k; k++) {
        uint32_t best = order[k], worst = order[n - 1 - k];
        double gap = sorting[best].reward - sorting[worst].reward;
        if (gap <= 0.0 || gap < min_gap) break;  // inner pairs only get closer
        ret->ptr[ret->len].chosen = best;
        ret->ptr[ret->len].rejected = worst;
        ret->len++;
    }
    free(order);
}

bool exports_eva_plugin_pair_pair(exports_eva_plugin_pair_prompt_responses_t *item,
                                  exports_eva_plugin_pair_list_preference_t *ret,
                                  exports_eva_plugin_pair_plugin_error_t *err) {
    (void)err;
    pair_one(item, ret);
    exports_eva_plugin_pair_prompt_responses_free(item);
    return true;
}

bool exports_eva_plugin_pair_pair_batch(exports_eva_plugin_pair_list_prompt_responses_t *items,
                                        exports_eva_plugin_pair_list_list_preference_t *ret,
                                        exports_eva_plugin_pair_plugin_error_t *err) {
    (void)err;
    ret->len = items->len;
    ret->ptr = malloc(items->len * sizeof(exports_eva_plugin_pair_list_preference_t));
    for (size_t i = 0; i < items->len; i++) pair_one(&items->ptr[i], &ret->ptr[i]);
    exports_eva_plugin_pair_list_prompt_responses_free(items);
    return true;
}
