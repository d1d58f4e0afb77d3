/// `XADD key [NOMKSTREAM] [MAXLEN|MINID ...] id field value ...`: the new entry's id.
public struct XADD: RedisCommand {
    public var keysAffected: [RedisArgument] { [key] }
    public var key: RedisArgument
    public var fields: [StreamField]
    /// `*` (the default): Redis makes the id. Never a wall-clock id of ours.
    public var id: String
    public var trim: StreamTrim?
    public var noMakeStream: Bool

    public init(_ key: RedisArgument, id: String = "*", fields: [StreamField], trim: StreamTrim? = nil, noMakeStream: Bool = false) {
        self.key = key
        self.id = id
        self.fields = fields
        self.trim = trim
        self.noMakeStream = noMakeStream
    }

    public var arguments: [RedisArgument] {
        var a: [RedisArgument] = ["XADD", key]
        a.reserveCapacity(4 + fields.count * 2)
        if noMakeStream { a.append("NOMKSTREAM") }
        if let trim { a += trim.arguments }
        a.append(RedisArgument(id))
        for f in fields {
            a.append(RedisArgument(f.name))
            a.append(RedisArgument(bytes: f.value))
        }
        return a
    }

    /// Written in place: XADD is what publishers send in volume.
    public func encode(into encoder: inout RESPEncoder) {
        guard trim == nil else { return encoder.encode(arguments) }
        encoder.beginCommand(argumentCount: 3 + (noMakeStream ? 1 : 0) + 2 * fields.count)
        encoder.append("XADD")
        encoder.append(key.bytes)
        if noMakeStream { encoder.append("NOMKSTREAM") }
        encoder.append(id)
        for f in fields {
            encoder.append(f.name)
            encoder.append(f.value)
        }
    }

    /// The id, or nil when NOMKSTREAM found no stream.
    public func decode(_ reply: RESPValue) throws(RedisError) -> String? { reply.string }

    public func decode(from reply: inout RESPReplyCursor) throws(RedisError) -> String? {
        if reply.kind == .null {
            reply.skip()
            return nil
        }
        return try reply.readString()
    }
}

/// The entries XREADGROUP returned for one stream.
public struct StreamBatch: Sendable, Hashable {
    public var stream: String
    public var entries: [StreamEntry]
}

/// `XREADGROUP GROUP group consumer [COUNT n] [BLOCK ms] [NOACK] STREAMS key... id...`.
///
/// Use id `>` for new entries, or an explicit id (e.g. `0`) to re-read this consumer's own
/// pending entries. A timeout with nothing to read gives an empty array.
public struct XREADGROUP: RedisCommand {
    public var keysAffected: [RedisArgument] { streams.map { RedisArgument($0.key) } }
    public var group: String
    public var consumer: String
    public var streams: [(key: String, id: String)]
    public var count: Int?
    public var block: Duration?
    public var noAck: Bool

    public init(group: String, consumer: String, streams: [(key: String, id: String)], count: Int? = nil, block: Duration? = nil, noAck: Bool = false) {
        self.group = group
        self.consumer = consumer
        self.streams = streams
        self.count = count
        self.block = block
        self.noAck = noAck
    }

    public var blockingTimeout: Duration? { block }

    public var arguments: [RedisArgument] {
        var a: [RedisArgument] = ["XREADGROUP", "GROUP", RedisArgument(group), RedisArgument(consumer)]
        if let count { a += ["COUNT", RedisArgument(count)] }
        if let block { a += ["BLOCK", RedisArgument(block.milliseconds)] }
        if noAck { a.append("NOACK") }
        a.append("STREAMS")
        for s in streams { a.append(RedisArgument(s.key)) }
        for s in streams { a.append(RedisArgument(s.id)) }
        return a
    }

    public func decode(_ reply: RESPValue) throws(RedisError) -> [StreamBatch] {
        switch reply {
        case .null: return []
        case .array(let perStream):
            var out: [StreamBatch] = []
            for item in perStream {
                guard case .array(let pair) = item, pair.count == 2, let name = pair[0].string else {
                    throw unexpected(item, "[stream, entries]")
                }
                out.append(StreamBatch(stream: name, entries: try StreamEntry.decodeList(pair[1])))
            }
            return out
        default: throw unexpected(reply, "array or nil")
        }
    }

    /// In place: the entries go straight from the parsed reply into ``StreamEntry`` values.
    public func decode(from reply: inout RESPReplyCursor) throws(RedisError) -> [StreamBatch] {
        guard let count = try reply.readArray() else { return [] }
        var out: [StreamBatch] = []
        out.reserveCapacity(count)
        for _ in 0..<count {
            guard try reply.readArray() == 2 else { throw RedisError(.unexpectedReply, "expected [stream, entries]") }
            let name = try reply.readString()
            out.append(StreamBatch(stream: name, entries: try StreamEntry.decodeList(from: &reply)))
        }
        return out
    }
}

/// `XACK key group id...`: how many entries were acknowledged.
public struct XACK: RedisCommand {
    public var keysAffected: [RedisArgument] { [key] }
    public var key: RedisArgument
    public var group: RedisArgument
    public var ids: [String]
    public init(_ key: RedisArgument, group: RedisArgument, ids: [String]) {
        self.key = key
        self.group = group
        self.ids = ids
    }
    public var arguments: [RedisArgument] { ["XACK", key, group] + ids.map { RedisArgument($0) } }
    public func decode(_ reply: RESPValue) throws(RedisError) -> Int {
        guard let n = reply.int else { throw unexpected(reply, "integer") }
        return n
    }
}

/// `XAUTOCLAIM key group consumer min-idle start [COUNT n]`.
///
/// Follow ``Response/nextCursor`` until it is `0-0` to scan the whole pending list. Redis 7
/// also reports the ids of pending entries that no longer exist in the stream (trimmed or
/// deleted); Redis removed them from the pending list.
public struct XAUTOCLAIM: RedisCommand {
    public var keysAffected: [RedisArgument] { [key] }
    public struct Response: Sendable, Hashable {
        public var nextCursor: String
        public var entries: [StreamEntry]
        public var deletedIDs: [String]
    }

    public var key: RedisArgument
    public var group: String
    public var consumer: String
    public var minIdle: Duration
    public var start: String
    public var count: Int?

    public init(_ key: RedisArgument, group: String, consumer: String, minIdle: Duration, start: String = "0-0", count: Int? = nil) {
        self.key = key
        self.group = group
        self.consumer = consumer
        self.minIdle = minIdle
        self.start = start
        self.count = count
    }

    public var arguments: [RedisArgument] {
        var a: [RedisArgument] = [
            "XAUTOCLAIM", key, RedisArgument(group), RedisArgument(consumer), RedisArgument(minIdle.milliseconds),
            RedisArgument(start),
        ]
        if let count { a += ["COUNT", RedisArgument(count)] }
        return a
    }

    public func decode(_ reply: RESPValue) throws(RedisError) -> Response {
        guard case .array(let parts) = reply, parts.count >= 2, let cursor = parts[0].string else {
            throw unexpected(reply, "[cursor, entries, deleted]")
        }
        let deleted = parts.count > 2 ? (parts[2].array ?? []).compactMap(\.string) : []
        return Response(nextCursor: cursor, entries: try StreamEntry.decodeList(parts[1]), deletedIDs: deleted)
    }
}

/// `XCLAIM key group consumer min-idle id... [IDLE ms] [RETRYCOUNT n] [FORCE] [JUSTID]`.
///
/// With ``justID`` (used to refresh a lease), the delivery counter is not incremented and the
/// response lists only the ids that were claimed (entries whose idle time was below `minIdle`,
/// or that no longer are pending, are left out).
public struct XCLAIM: RedisCommand {
    public var keysAffected: [RedisArgument] { [key] }
    public var key: RedisArgument
    public var group: String
    public var consumer: String
    public var minIdle: Duration
    public var ids: [String]
    public var idle: Duration?
    public var retryCount: Int?
    public var force: Bool
    public var justID: Bool

    public init(
        _ key: RedisArgument, group: String, consumer: String, minIdle: Duration = .zero, ids: [String],
        idle: Duration? = nil, retryCount: Int? = nil, force: Bool = false, justID: Bool = false
    ) {
        self.key = key
        self.group = group
        self.consumer = consumer
        self.minIdle = minIdle
        self.ids = ids
        self.idle = idle
        self.retryCount = retryCount
        self.force = force
        self.justID = justID
    }

    public var arguments: [RedisArgument] {
        var a: [RedisArgument] = ["XCLAIM", key, RedisArgument(group), RedisArgument(consumer), RedisArgument(minIdle.milliseconds)]
        a += ids.map { RedisArgument($0) }
        if let idle { a += ["IDLE", RedisArgument(idle.milliseconds)] }
        if let retryCount { a += ["RETRYCOUNT", RedisArgument(retryCount)] }
        if force { a.append("FORCE") }
        if justID { a.append("JUSTID") }
        return a
    }

    /// The claimed entries; with JUSTID, entries with only an id (and no fields).
    public func decode(_ reply: RESPValue) throws(RedisError) -> [StreamEntry] {
        if justID {
            guard case .array(let items) = reply else { throw unexpected(reply, "array of ids") }
            return items.compactMap { $0.string.map { StreamEntry(id: $0, fields: []) } }
        }
        return try StreamEntry.decodeList(reply)
    }
}

/// `XPENDING key group`: the summary of a group's pending entries.
public struct XPENDING: RedisCommand {
    public var keysAffected: [RedisArgument] { [key] }
    public var isReadOnly: Bool { true }
    public struct Summary: Sendable, Hashable {
        public var count: Int
        public var smallestID: String?
        public var largestID: String?
        /// Pending count per consumer that holds any.
        public var consumers: [String: Int]
    }

    public var key: RedisArgument
    public var group: String
    public init(_ key: RedisArgument, group: String) {
        self.key = key
        self.group = group
    }
    public var arguments: [RedisArgument] { ["XPENDING", key, RedisArgument(group)] }

    public func decode(_ reply: RESPValue) throws(RedisError) -> Summary {
        guard case .array(let parts) = reply, parts.count == 4, let count = parts[0].int else {
            throw unexpected(reply, "XPENDING summary")
        }
        var consumers: [String: Int] = [:]
        for c in parts[3].array ?? [] {
            if let pair = c.array, pair.count == 2, let name = pair[0].string, let n = pair[1].int { consumers[name] = n }
        }
        return Summary(count: count, smallestID: parts[1].string, largestID: parts[2].string, consumers: consumers)
    }
}

/// `XPENDING key group [IDLE ms] start end count [consumer]`: pending entries in detail.
public struct XPENDINGDetail: RedisCommand {
    public var keysAffected: [RedisArgument] { [key] }
    public var isReadOnly: Bool { true }
    public struct Entry: Sendable, Hashable {
        public var id: String
        public var consumer: String
        /// Milliseconds since the entry was last delivered (or its lease refreshed).
        public var idleMilliseconds: Int
        /// Redis's own delivery counter.
        public var deliveryCount: Int
    }

    public var key: RedisArgument
    public var group: String
    public var minIdle: Duration?
    public var start: String
    public var end: String
    public var count: Int
    public var consumer: String?

    public init(_ key: RedisArgument, group: String, minIdle: Duration? = nil, start: String = "-", end: String = "+", count: Int, consumer: String? = nil) {
        self.key = key
        self.group = group
        self.minIdle = minIdle
        self.start = start
        self.end = end
        self.count = count
        self.consumer = consumer
    }

    public var arguments: [RedisArgument] {
        var a: [RedisArgument] = ["XPENDING", key, RedisArgument(group)]
        if let minIdle { a += ["IDLE", RedisArgument(minIdle.milliseconds)] }
        a += [RedisArgument(start), RedisArgument(end), RedisArgument(count)]
        if let consumer { a.append(RedisArgument(consumer)) }
        return a
    }

    public func decode(_ reply: RESPValue) throws(RedisError) -> [Entry] {
        guard case .array(let items) = reply else { throw unexpected(reply, "array") }
        var out: [Entry] = []
        for item in items {
            guard let p = item.array, p.count == 4, let id = p[0].string, let c = p[1].string, let idle = p[2].int,
                let n = p[3].int
            else { throw unexpected(item, "[id, consumer, idle, deliveries]") }
            out.append(Entry(id: id, consumer: c, idleMilliseconds: idle, deliveryCount: n))
        }
        return out
    }
}

/// `XGROUP CREATE key group id [MKSTREAM]`. Throws BUSYGROUP when the group exists.
public struct XGROUPCREATE: RedisCommand {
    public var keysAffected: [RedisArgument] { [key] }
    public typealias Response = RESPValue
    public var key: RedisArgument
    public var group: String
    /// `0` (from the beginning), `$` (new entries only), or an id.
    public var id: String
    public var makeStream: Bool
    public init(_ key: RedisArgument, group: String, id: String = "0", makeStream: Bool = true) {
        self.key = key
        self.group = group
        self.id = id
        self.makeStream = makeStream
    }
    public var arguments: [RedisArgument] {
        var a: [RedisArgument] = ["XGROUP", "CREATE", key, RedisArgument(group), RedisArgument(id)]
        if makeStream { a.append("MKSTREAM") }
        return a
    }
}

/// `XGROUP DELCONSUMER key group consumer`: how many pending entries the consumer had.
/// Those entries are removed from the pending list too, so delete only consumers with none.
public struct XGROUPDELCONSUMER: RedisCommand {
    public var keysAffected: [RedisArgument] { [key] }
    public var key: RedisArgument
    public var group: String
    public var consumer: String
    public init(_ key: RedisArgument, group: String, consumer: String) {
        self.key = key
        self.group = group
        self.consumer = consumer
    }
    public var arguments: [RedisArgument] { ["XGROUP", "DELCONSUMER", key, RedisArgument(group), RedisArgument(consumer)] }
    public func decode(_ reply: RESPValue) throws(RedisError) -> Int {
        guard let n = reply.int else { throw unexpected(reply, "integer") }
        return n
    }
}

/// `XGROUP SETID key group id`.
public struct XGROUPSETID: RedisCommand {
    public var keysAffected: [RedisArgument] { [key] }
    public typealias Response = RESPValue
    public var key: RedisArgument
    public var group: String
    public var id: String
    /// `ENTRIESREAD n` (Redis 7.0+): the entries the group has read up to `id`, so that XINFO
    /// GROUPS can report its lag exactly; nil leaves it unknown after a jump.
    public var entriesRead: Int?
    public init(_ key: RedisArgument, group: String, id: String, entriesRead: Int? = nil) {
        self.key = key
        self.group = group
        self.id = id
        self.entriesRead = entriesRead
    }
    public var arguments: [RedisArgument] {
        ["XGROUP", "SETID", key, RedisArgument(group), RedisArgument(id)] + (entriesRead.map { ["ENTRIESREAD", RedisArgument($0)] } ?? [])
    }
}

/// `XGROUP DESTROY key group`: true when the group existed.
public struct XGROUPDESTROY: RedisCommand {
    public var keysAffected: [RedisArgument] { [key] }
    public var key: RedisArgument
    public var group: String
    public init(_ key: RedisArgument, group: String) {
        self.key = key
        self.group = group
    }
    public var arguments: [RedisArgument] { ["XGROUP", "DESTROY", key, RedisArgument(group)] }
    public func decode(_ reply: RESPValue) throws(RedisError) -> Bool { reply.int == 1 }
}

/// `XINFO STREAM key`.
public struct XINFOSTREAM: RedisCommand {
    public var keysAffected: [RedisArgument] { [key] }
    public var isReadOnly: Bool { true }
    public struct Info: Sendable, Hashable {
        public var length: Int
        public var lastGeneratedID: String
        public var groups: Int
        /// Entries ever added (Redis 7).
        public var entriesAdded: Int?
        public var firstEntryID: String?
        public var lastEntryID: String?
        /// The largest id ever deleted (Redis 7).
        public var maxDeletedEntryID: String?
    }
    public var key: RedisArgument
    public init(_ key: RedisArgument) { self.key = key }
    public var arguments: [RedisArgument] { ["XINFO", "STREAM", key] }
    public func decode(_ reply: RESPValue) throws(RedisError) -> Info {
        let d = try keyValuePairs(reply)
        func firstID(_ name: String) -> String? { d[name]?.array?.first?.string }
        return Info(
            length: d["length"]?.int ?? 0,
            lastGeneratedID: d["last-generated-id"]?.string ?? "0-0",
            groups: d["groups"]?.int ?? 0,
            entriesAdded: d["entries-added"]?.int,
            firstEntryID: firstID("first-entry"),
            lastEntryID: firstID("last-entry"),
            maxDeletedEntryID: d["max-deleted-entry-id"]?.string)
    }
}

/// `XINFO GROUPS key`.
public struct XINFOGROUPS: RedisCommand {
    public var keysAffected: [RedisArgument] { [key] }
    public var isReadOnly: Bool { true }
    public struct Group: Sendable, Hashable {
        public var name: String
        public var consumers: Int
        public var pending: Int
        public var lastDeliveredID: String
        /// Redis 7: entries the group has read (nil when Redis cannot tell).
        public var entriesRead: Int?
        /// Redis 7: entries not yet delivered to the group; nil when Redis cannot tell (after
        /// deletions or an XGROUP SETID), so callers must not read nil as zero.
        public var lag: Int?
    }
    public var key: RedisArgument
    public init(_ key: RedisArgument) { self.key = key }
    public var arguments: [RedisArgument] { ["XINFO", "GROUPS", key] }
    public func decode(_ reply: RESPValue) throws(RedisError) -> [Group] {
        guard case .array(let items) = reply else { throw unexpected(reply, "array") }
        var out: [Group] = []
        for item in items {
            let d = try keyValuePairs(item)
            out.append(
                Group(
                    name: d["name"]?.string ?? "",
                    consumers: d["consumers"]?.int ?? 0,
                    pending: d["pending"]?.int ?? 0,
                    lastDeliveredID: d["last-delivered-id"]?.string ?? "0-0",
                    entriesRead: d["entries-read"]?.int,
                    lag: d["lag"]?.int))
        }
        return out
    }
}

/// `XINFO CONSUMERS key group`.
public struct XINFOCONSUMERS: RedisCommand {
    public var keysAffected: [RedisArgument] { [key] }
    public var isReadOnly: Bool { true }
    public struct Consumer: Sendable, Hashable {
        public var name: String
        public var pending: Int
        /// Milliseconds since the consumer last read or claimed.
        public var idleMilliseconds: Int
        /// Redis 7.2: milliseconds since its last successful read or claim (nil before 7.2).
        public var inactiveMilliseconds: Int?
    }
    public var key: RedisArgument
    public var group: String
    public init(_ key: RedisArgument, group: String) {
        self.key = key
        self.group = group
    }
    public var arguments: [RedisArgument] { ["XINFO", "CONSUMERS", key, RedisArgument(group)] }
    public func decode(_ reply: RESPValue) throws(RedisError) -> [Consumer] {
        guard case .array(let items) = reply else { throw unexpected(reply, "array") }
        var out: [Consumer] = []
        for item in items {
            let d = try keyValuePairs(item)
            out.append(
                Consumer(
                    name: d["name"]?.string ?? "", pending: d["pending"]?.int ?? 0,
                    idleMilliseconds: d["idle"]?.int ?? 0, inactiveMilliseconds: d["inactive"]?.int))
        }
        return out
    }
}

/// `XRANGE key start end [COUNT n]` (or XREVRANGE with ``reverse``).
public struct XRANGE: RedisCommand {
    public var keysAffected: [RedisArgument] { [key] }
    public var isReadOnly: Bool { true }
    public var key: RedisArgument
    public var start: String
    public var end: String
    public var count: Int?
    public var reverse: Bool
    public init(_ key: RedisArgument, start: String = "-", end: String = "+", count: Int? = nil, reverse: Bool = false) {
        self.key = key
        self.start = start
        self.end = end
        self.count = count
        self.reverse = reverse
    }
    public var arguments: [RedisArgument] {
        var a: [RedisArgument] =
            reverse ? ["XREVRANGE", key, RedisArgument(end), RedisArgument(start)] : ["XRANGE", key, RedisArgument(start), RedisArgument(end)]
        if let count { a += ["COUNT", RedisArgument(count)] }
        return a
    }
    public func decode(_ reply: RESPValue) throws(RedisError) -> [StreamEntry] { try StreamEntry.decodeList(reply) }
    public func decode(from reply: inout RESPReplyCursor) throws(RedisError) -> [StreamEntry] { try StreamEntry.decodeList(from: &reply) }
}

/// `XTRIM key MAXLEN|MINID [=|~] threshold [LIMIT n]`: how many entries were removed.
public struct XTRIM: RedisCommand {
    public var keysAffected: [RedisArgument] { [key] }
    public var key: RedisArgument
    public var trim: StreamTrim
    public init(_ key: RedisArgument, _ trim: StreamTrim) {
        self.key = key
        self.trim = trim
    }
    public var arguments: [RedisArgument] { ["XTRIM", key] + trim.arguments }
    public func decode(_ reply: RESPValue) throws(RedisError) -> Int {
        guard let n = reply.int else { throw unexpected(reply, "integer") }
        return n
    }
}

/// `XLEN key`.
public struct XLEN: RedisCommand {
    public var keysAffected: [RedisArgument] { [key] }
    public var isReadOnly: Bool { true }
    public var key: RedisArgument
    public init(_ key: RedisArgument) { self.key = key }
    public var arguments: [RedisArgument] { ["XLEN", key] }
    public func decode(_ reply: RESPValue) throws(RedisError) -> Int {
        guard let n = reply.int else { throw unexpected(reply, "integer") }
        return n
    }
}

/// `XDEL key id...`: how many entries were deleted.
public struct XDEL: RedisCommand {
    public var keysAffected: [RedisArgument] { [key] }
    public var key: RedisArgument
    public var ids: [String]
    public init(_ key: RedisArgument, ids: [String]) {
        self.key = key
        self.ids = ids
    }
    public var arguments: [RedisArgument] { ["XDEL", key] + ids.map { RedisArgument($0) } }
    public func decode(_ reply: RESPValue) throws(RedisError) -> Int {
        guard let n = reply.int else { throw unexpected(reply, "integer") }
        return n
    }
}
