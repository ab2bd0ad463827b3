/* datasets/shard.h — one shard file: header, records, index, footer.
 *
 * defines: shard_writer_open, shard_writer_add, shard_writer_finish,
 *          shard_writer_abort, shard_open, shard_close, shard_count,
 *          shard_entry, shard_entry_at, shard_read_record, shard_fd,
 *          shard_header_of, shard_max_length, shard_uniform,
 *          shard_index_memory
 *
 * The byte layout is specified in datasets/FORMAT.md. All integers are
 * little-endian. A writer streams records to a file it creates; a reader
 * validates magic, version, header checksum, footer checksum, index checksum
 * and every index entry at open, and checks each record's XXH3 when the
 * record is read.
 *
 * Versions: the writer writes version 2 (24-byte entries that carry each
 * record's offset, height and width); version 1 (12-byte entries, fixed
 * shape) is still read, and written only when hdr->version is 1 (tests'
 * compatibility fixtures). A version-2 index is used in place from a
 * read-only shared mapping of the file (page cache the kernel can drop,
 * no anonymous memory); a version-1 index is copied (24 bytes a record).
 */
#ifndef ST_SHARD_H
#define ST_SHARD_H

#include <stdint.h>
#include <stddef.h>

#include "error.h"

#define SHARD_MAGIC "STSHARD\0"      /* 8 bytes at offset 0 */
#define SHARD_FOOTER_MAGIC "STSHEND\0" /* 8 bytes at footer start */
#define SHARD_VERSION 2u           /* written */
#define SHARD_VERSION_MIN 1u       /* oldest read */
#define SHARD_HEADER_BYTES 64u
#define SHARD_ENTRY_BYTES 24u      /* version 2 */
#define SHARD_ENTRY_BYTES_V1 12u
#define SHARD_FOOTER_BYTES 32u
#define SHARD_MAX_SIDE 65535u      /* an entry's height and width are u16 */

enum { CODEC_RAW = 0, CODEC_ZSTD = 1, CODEC_PNG = 2, CODEC_JPEG = 3 };
enum { DTYPE_U8 = 1 };
enum { LABEL_I32 = 1 };

typedef struct shard_header {
    uint32_t version;       /* 1 or 2; writer: 1 writes version 1, any
                               other value SHARD_VERSION */
    uint32_t codec;         /* CODEC_* */
    uint32_t height, width; /* the shape (version 1, or a fixed-shape
                               pack), else the largest record's: every
                               entry's height/width is at most these */
    uint32_t channels;
    uint32_t dtype;         /* DTYPE_U8 */
    uint32_t label_type;    /* LABEL_I32 */
    uint32_t dict_id;       /* zstd dictionary id, 0 when none */
    uint64_t record_count;
    uint64_t index_offset;  /* byte offset of the index */
} shard_header;

/* One record's index entry. In a version-2 file this is exactly the
 * on-disk entry (24 bytes, little-endian, 8-byte aligned), so readers use
 * it in place from the mapping. A version-1 entry on disk is 12 bytes
 * (length, label, check); the reader copies it into this form, computing
 * offset as a prefix sum and height/width from the header. */
typedef struct shard_entry {
    uint64_t offset;   /* byte offset of the record in the file */
    uint32_t length;   /* encoded bytes */
    int32_t label;
    uint32_t check;    /* low 32 bits of XXH3_64bits of the encoded bytes */
    uint16_t height;   /* the decoded image's size: 1..header height */
    uint16_t width;    /* 1..header width */
} shard_entry;

_Static_assert(sizeof(shard_entry) == SHARD_ENTRY_BYTES,
               "shard_entry is the 24-byte version-2 entry");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "version-2 indexes are used in place: a little-endian host");

/* @return the check value of len bytes at data. */
uint32_t shard_record_check(const void *data, size_t len);

/* ---- writing ---------------------------------------------------------- */
typedef struct shard_writer shard_writer;

/* Creates path (O_EXCL) and reserves the header. hdr->record_count and
 * hdr->index_offset are ignored; the writer fills them in.
 * @return 0, or ST_EIO / ST_ENOSPC / ST_ENOMEM with the path in err. */
int shard_writer_open(const char *path, const shard_header *hdr,
                      shard_writer **out, st_error *err);

/* Appends one record of a height x width image (1..the header's height
 * and width; a version-1 writer needs exactly the header's).
 * @return 0 or a negative st_errcode (ST_EINVAL for a bad size). */
int shard_writer_add(shard_writer *w, const void *data, size_t len,
                     int32_t label, uint32_t height, uint32_t width,
                     st_error *err);

/* Bytes written so far (header + records), to decide when to roll over. */
uint64_t shard_writer_bytes(const shard_writer *w);

/* Writes index, footer and final header, fsyncs and closes. Always frees w.
 * On success *file_bytes, *file_xxh3 (XXH3 of the whole file) and
 * *index_xxh3 describe the file for the manifest.
 * @return 0 or a negative st_errcode (ST_ENOSPC on a full disk). */
int shard_writer_finish(shard_writer *w, uint64_t *file_bytes,
                        uint64_t *file_xxh3, uint64_t *index_xxh3,
                        st_error *err);

/* Closes and unlinks the partial file. Accepts NULL. */
void shard_writer_abort(shard_writer *w);

/* ---- reading ---------------------------------------------------------- */
typedef struct shard shard;

/* Opens and validates a shard: size, magic, version (an unknown version is
 * refused by number), header/footer/index checksums, and every entry.
 *
 * Work at open is O(N) in the record count N, over the index only (no
 * record is read): one XXH3 pass over the index and one bounds pass over
 * the entries (length >= 1; records in index order, not overlapping, all
 * between the header and the index; height and width in 1..the header's).
 * Version 2: the index (plus footer) is mapped read-only (PROT_READ,
 * MAP_SHARED) and used in place: the pages it touches are page cache,
 * which the kernel may drop and re-read, and the handle holds O(1)
 * anonymous memory whatever N, so a billion-record pack needs no 24 GB of
 * RAM (a file truncated under an open shard raises SIGBUS, as any mapping).
 * Version 1: the index is copied into memory, 24 bytes a record.
 * Records are read on demand with pread.
 * @return 0 or ST_ENOTFOUND / ST_EIO / ST_EFORMAT / ST_EVERSION /
 *         ST_ECHECKSUM with the path and the field in err. */
int shard_open(const char *path, shard **out, st_error *err);

/* Accepts NULL. */
void shard_close(shard *s);

const shard_header *shard_header_of(const shard *s);
uint64_t shard_count(const shard *s);
/* Entry i < shard_count: version 2, a pointer into the read-only mapping;
 * version 1, into the copied array. Valid until shard_close. */
const shard_entry *shard_entry_at(const shard *s, uint64_t i);
uint64_t shard_index_xxh3(const shard *s);
/* Largest record length, found by shard_open's pass. */
uint32_t shard_max_length(const shard *s);
/* 1 when every entry is the header's height x width (found at open). */
int shard_uniform(const shard *s);
/* Anonymous memory held for the index: 24 * N for version 1, 0 for
 * version 2 (mapped). */
size_t shard_index_memory(const shard *s);
const char *shard_path(const shard *s);
int shard_fd(const shard *s);

/* Reads record i into buf (cap bytes) with pread and checks its XXH3.
 * @return 0 or ST_EIO / ST_ECHECKSUM / ST_EINVAL, naming path and record. */
int shard_read_record(const shard *s, uint64_t i, void *buf, size_t cap,
                      st_error *err);

/* Parses and checks the 64-byte header in buf (used by shard_open and the
 * fuzz target). @return 0 or ST_EFORMAT / ST_EVERSION / ST_ECHECKSUM. */
int shard_parse_header(const uint8_t *buf, size_t len, const char *path,
                       shard_header *out, st_error *err);

#endif
