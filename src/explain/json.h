/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/*
 * A small, strict JSON reader (RFC 8259) for text that comes from builds
 * (the agent's BUILDKITE_PLUGINS): one value, nothing after it but white
 * space; UTF-8 checked byte by byte (no overlong forms, no surrogates, no
 * code point past U+10FFFF); only JSON's escapes, \u pairs joined, a lone
 * surrogate or \u0000 refused (strings become C strings); no raw control
 * character in a string; numbers by the grammar, kept as their text; no
 * duplicate key in an object. Bounded: JSON_MAX_SIZE bytes, JSON_MAX_DEPTH
 * nested arrays and objects, JSON_MAX_VALUES values, JSON_MAX_MEMBERS
 * members in one object, so hostile input costs little (time and memory
 * linear in its size) and cannot exhaust the stack. Errors name what is wrong and the byte offset.
 */

#define JSON_MAX_SIZE (1U << 20)
#define JSON_MAX_DEPTH 64
#define JSON_MAX_VALUES 100000U
#define JSON_MAX_MEMBERS 1000U

typedef enum JsonType {
        JSON_NULL,
        JSON_FALSE,
        JSON_TRUE,
        JSON_NUMBER,
        JSON_STRING,
        JSON_ARRAY,
        JSON_OBJECT,
} JsonType;

typedef struct JsonValue JsonValue;
struct JsonValue {
        JsonType type;
        char *text;            /* STRING: decoded; NUMBER: as written */
        size_t n;              /* ARRAY, OBJECT: number of elements */
        char **keys;           /* OBJECT: the members' names, decoded */
        JsonValue **items;     /* ARRAY: elements; OBJECT: the members' values */
};

/*
 * Parse text (size bytes; a NUL inside is an error). Returns 0 and *ret, or
 * -EINVAL with *ret_error (malloc'd: what and at which byte), -E2BIG beyond
 * JSON_MAX_SIZE, -ENOMEM.
 */
int json_parse(const char *text, size_t size, JsonValue **ret, char **ret_error);

void json_free(JsonValue *v);
static inline void json_freep(JsonValue **v) {
        json_free(*v);
}

/* The value of member key of an object, or NULL. */
const JsonValue *json_object_get(const JsonValue *object, const char *key);

const char *json_type_name(JsonType t);
