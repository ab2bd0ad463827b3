/* datasets/units.h — parsing and printing sizes and counts for the CLIs.
 *
 * defines: units_parse_bytes, units_format_bytes, units_parse_int
 */
#ifndef ST_UNITS_H
#define ST_UNITS_H

#include <stddef.h>
#include <stdint.h>

/* Parses "65536", "64K", "64KiB", "64M", "1.5G" (binary multiples).
 * @return 0, or -1 when s is not a size. */
int units_parse_bytes(const char *s, uint64_t *out);

/* Formats bytes as "54.9 MiB" into buf. @return buf. */
const char *units_format_bytes(uint64_t bytes, char *buf, size_t cap);

/* Parses a whole decimal integer in [lo, hi]. @return 0 or -1. */
int units_parse_int(const char *s, long lo, long hi, long *out);

#endif
