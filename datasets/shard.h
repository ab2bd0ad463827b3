/* datasets/shard.h — one shard file: header, records, index, footer.
 *
 * defines: shard_writer_open, shard_writer_add, shard_writer_finish,
 *          shard_writer_abort, shard_open, shard_close, shard_count,
 *          shard_entry, shard_read_record, shard_fd, shard_header_of
 *
 * The byte layout is specified in datasets/FORMAT.md. All integers are
 * little-endian. A writer streams records to a file it creates; a reader
 * validates magic, version, header checksum, footer checksum, index checksum
 * and the index's offsets at open, and checks each record's XXH3 when the
 * record is read.
 */
#ifndef ST_SHARD_H
#define ST_SHARD_H

#include <stdint.h>
#include <stddef.h>

#include "error.h"

#define SHARD_MAGIC "STSHARD\0"      /* 8 bytes at offset 0 */
#define SHARD_FOOTER_MAGIC "STSHEND\0" /* 8 bytes at footer start */
#define SHARD_VERSION 1u
#define SHARD_HEADER_BYTES 64u
#define SHARD_ENTRY_BYTES 12u
#define SHARD_FOOTER_BYTES 32u

enum { CODEC_RAW = 0, CODEC_ZSTD = 1, CODEC_PNG = 2, CODEC_JPEG = 3 };
enum { DTYPE_U8 = 1 };
enum { LABEL_I32 = 1 };

typedef struct shard_header {
    uint32_t version;       /* SHARD_VERSION */
    uint32_t codec;         /* CODEC_* */
    uint32_t height, width, channels;
    uint32_t dtype;         /* DTYPE_U8 */
    uint32_t label_type;    /* LABEL_I32 */
    uint32_t dict_id;       /* zstd dictionary id, 0 when none */
    uint64_t record_count;
    uint64_t index_offset;  /* byte offset of the index */
} shard_header;

/* One record, as kept in memory. On disk an entry is 12 bytes (length,
 * label, check): records lie back to back from byte 64 in index order, so
 * the offsets are prefix sums computed at open. */
typedef struct shard_entry {
    uint64_t offset;   /* byte offset of the record in the file */
    uint32_t length;   /* encoded bytes */
    int32_t label;
    uint32_t check;    /* low 32 bits of XXH3_64bits of the encoded bytes */
} shard_entry;

/* @return the check value of len bytes at data. */
uint32_t shard_record_check(const void *data, size_t len);

/* ---- writing ---------------------------------------------------------- */
typedef struct shard_writer shard_writer;

/* Creates path (O_EXCL) and reserves the header. hdr->record_count and
 * hdr->index_offset are ignored; the writer fills them in.
 * @return 0, or ST_EIO / ST_ENOSPC / ST_ENOMEM with the path in err. */
int shard_writer_open(const char *path, const shard_header *hdr,
                      shard_writer **out, st_error *err);

/* Appends one record. @return 0 or a negative st_errcode. */
int shard_writer_add(shard_writer *w, const void *data, size_t len,
                     int32_t label, st_error *err);

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
 * refused by number), header/footer/index checksums, and that every record
 * lies between the header and the index. The index is kept in memory
 * (24 bytes a record); records are read on demand with pread.
 * @return 0 or ST_ENOTFOUND / ST_EIO / ST_EFORMAT / ST_EVERSION /
 *         ST_ECHECKSUM with the path and the field in err. */
int shard_open(const char *path, shard **out, st_error *err);

/* Accepts NULL. */
void shard_close(shard *s);

const shard_header *shard_header_of(const shard *s);
uint64_t shard_count(const shard *s);
const shard_entry *shard_entry_at(const shard *s, uint64_t i);
uint64_t shard_index_xxh3(const shard *s);
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
