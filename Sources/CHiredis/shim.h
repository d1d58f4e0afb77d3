#ifndef ORDERSHOP_CHIREDIS_SHIM_H
#define ORDERSHOP_CHIREDIS_SHIM_H

// hiredis is used only as the RESP codec: redisFormatCommandArgv encodes requests and
// redisReader decodes replies. The transport (TCP, unix socket, TLS) is ours, so
// nothing here opens a socket.
#include <hiredis/hiredis.h>
#include <hiredis/read.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/// Feeds bytes to the reader; a thin wrapper so Swift sees a plain function.
static inline int chiredis_reader_feed(redisReader *reader, const char *buf, size_t len) {
    return redisReaderFeed(reader, buf, len);
}

/// The reader's error text after REDIS_ERR (a protocol error).
static inline const char *chiredis_reader_error(const redisReader *reader) {
    return reader->errstr;
}


// MARK: - Flat replies

/// One value of a reply, in pre-order (an array is followed by its elements).
typedef struct chiredis_node {
    /// REDIS_REPLY_STRING, _ARRAY, _INTEGER, _NIL, _STATUS or _ERROR.
    int type;
    /// The value of an integer; the element count of an array.
    long long integer;
    /// Strings, statuses and errors: where their bytes are in the reply's byte buffer.
    size_t offset;
    size_t length;
} chiredis_node;

/// A reply as a flat list of nodes plus one byte buffer: what hiredis's reader builds through
/// the functions below instead of a tree of redisReply objects (two mallocs per value). Reused
/// from reply to reply: ``chiredis_flat_reset`` after each complete reply is consumed.
typedef struct chiredis_flat {
    chiredis_node *nodes;
    size_t count;
    size_t capacity;
    char *bytes;
    size_t used;
    size_t bytes_capacity;
} chiredis_flat;

static inline void *chiredis_flat_add(const redisReadTask *task, int type, long long integer, const char *str, size_t len) {
    chiredis_flat *flat = (chiredis_flat *)task->privdata;
    if (flat->count == flat->capacity) {
        size_t capacity = flat->capacity < 64 ? 64 : flat->capacity * 2;
        chiredis_node *nodes = (chiredis_node *)realloc(flat->nodes, capacity * sizeof(chiredis_node));
        if (nodes == NULL) return NULL;
        flat->nodes = nodes;
        flat->capacity = capacity;
    }
    size_t offset = flat->used;
    if (len > 0) {
        if (flat->bytes_capacity - flat->used < len) {
            size_t capacity = flat->bytes_capacity < 4096 ? 4096 : flat->bytes_capacity;
            while (capacity - flat->used < len) capacity *= 2;
            char *bytes = (char *)realloc(flat->bytes, capacity);
            if (bytes == NULL) return NULL;
            flat->bytes = bytes;
            flat->bytes_capacity = capacity;
        }
        memcpy(flat->bytes + flat->used, str, len);
        flat->used += len;
    }
    chiredis_node *node = &flat->nodes[flat->count];
    node->type = type;
    node->integer = integer;
    node->offset = offset;
    node->length = len;
    flat->count += 1;
    // The node's index + 1: never NULL (NULL tells hiredis that allocation failed).
    return (void *)(uintptr_t)flat->count;
}

static inline void *chiredis_flat_string(const redisReadTask *task, char *str, size_t len) {
    return chiredis_flat_add(task, task->type, 0, str, len);
}

static inline void *chiredis_flat_array(const redisReadTask *task, int elements) {
    return chiredis_flat_add(task, REDIS_REPLY_ARRAY, elements, NULL, 0);
}

static inline void *chiredis_flat_integer(const redisReadTask *task, long long value) {
    return chiredis_flat_add(task, REDIS_REPLY_INTEGER, value, NULL, 0);
}

static inline void *chiredis_flat_nil(const redisReadTask *task) {
    return chiredis_flat_add(task, REDIS_REPLY_NIL, 0, NULL, 0);
}

/// Nodes are not objects of their own: the whole reply goes with ``chiredis_flat_reset``.
static inline void chiredis_flat_free_object(void *object) { (void)object; }

/// A reader that builds flat replies into `flat` (which must outlive it).
static inline redisReader *chiredis_flat_reader_create(chiredis_flat *flat) {
    static redisReplyObjectFunctions functions = {
        chiredis_flat_string, chiredis_flat_array, chiredis_flat_integer, chiredis_flat_nil, chiredis_flat_free_object,
    };
    redisReader *reader = redisReaderCreateWithFunctions(&functions);
    if (reader == NULL) return NULL;
    reader->privdata = flat;
    // hiredis frees its 16 KiB read buffer when idle; 0 keeps it (no malloc/free per read).
    reader->maxbuf = 0;
    return reader;
}

/// Returns REDIS_OK/REDIS_ERR; `*root` is the index + 1 of the reply's first node, or 0 when
/// more bytes are needed.
static inline int chiredis_flat_reader_get_reply(redisReader *reader, uintptr_t *root) {
    void *reply = NULL;
    int status = redisReaderGetReply(reader, &reply);
    *root = (uintptr_t)reply;
    return status;
}

/// Forgets the consumed reply; gives memory back after an unusually large one.
static inline void chiredis_flat_reset(chiredis_flat *flat) {
    flat->count = 0;
    flat->used = 0;
    if (flat->bytes_capacity > (8u << 20)) {
        free(flat->bytes);
        flat->bytes = NULL;
        flat->bytes_capacity = 0;
    }
    if (flat->capacity > (1u << 18)) {
        free(flat->nodes);
        flat->nodes = NULL;
        flat->capacity = 0;
    }
}

static inline void chiredis_flat_free(chiredis_flat *flat) {
    free(flat->nodes);
    free(flat->bytes);
    flat->nodes = NULL;
    flat->bytes = NULL;
    flat->count = flat->capacity = flat->used = flat->bytes_capacity = 0;
}

#endif
