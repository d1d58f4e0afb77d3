#ifndef ORDERSHOP_CHIREDIS_SHIM_H
#define ORDERSHOP_CHIREDIS_SHIM_H

// hiredis is used only as the RESP codec: redisFormatCommandArgv encodes requests and
// redisReader decodes replies. The transport (TCP, unix socket, TLS) is ours, so
// nothing here opens a socket.
#include <hiredis/hiredis.h>
#include <hiredis/read.h>

/// Feeds bytes to the reader; a thin wrapper so Swift sees a plain function.
static inline int chiredis_reader_feed(redisReader *reader, const char *buf, size_t len) {
    return redisReaderFeed(reader, buf, len);
}

/// Returns REDIS_OK/REDIS_ERR and stores a reply (or NULL when more bytes are needed).
static inline int chiredis_reader_get_reply(redisReader *reader, redisReply **reply) {
    return redisReaderGetReply(reader, (void **)reply);
}

/// The reader's error text after REDIS_ERR (a protocol error).
static inline const char *chiredis_reader_error(const redisReader *reader) {
    return reader->errstr;
}

/// hiredis keeps a 16 KiB buffer by default and frees it when idle. Setting maxbuf to 0
/// keeps the buffer, which avoids a malloc/free per read on a busy connection.
static inline void chiredis_reader_keep_buffer(redisReader *reader) {
    reader->maxbuf = 0;
}

#endif
