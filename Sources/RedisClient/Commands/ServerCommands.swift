/// `PING`: answers `PONG`.
public struct PING: RedisCommand {
    public var isReadOnly: Bool { true }
    public init() {}
    public var arguments: [RedisArgument] { ["PING"] }
    public func decode(_ reply: RESPValue) throws(RedisError) -> String {
        guard let s = reply.string else { throw unexpected(reply, "status") }
        return s
    }
}

/// `INFO [section]`: the server's info text parsed into `key: value` pairs.
public struct INFO: RedisCommand {
    public var isReadOnly: Bool { true }
    public var section: String?
    public init(section: String? = nil) { self.section = section }
    public var arguments: [RedisArgument] { section.map { ["INFO", RedisArgument($0)] } ?? ["INFO"] }
    public func decode(_ reply: RESPValue) throws(RedisError) -> [String: String] {
        guard let text = reply.string else { throw unexpected(reply, "bulk string") }
        var result: [String: String] = [:]
        for line in text.split(whereSeparator: \.isNewline) where !line.hasPrefix("#") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            result[String(line[..<colon])] = String(line[line.index(after: colon)...])
        }
        return result
    }
}

/// `GET key`.
public struct GET: RedisCommand {
    public var keysAffected: [RedisArgument] { [key] }
    public var isReadOnly: Bool { true }
    public var key: RedisArgument
    public init(_ key: RedisArgument) { self.key = key }
    public var arguments: [RedisArgument] { ["GET", key] }
    public func decode(_ reply: RESPValue) throws(RedisError) -> [UInt8]? { reply.bytes }
}

/// `SET key value [PX ms] [NX]`: true when the value was set.
public struct SET: RedisCommand {
    public var keysAffected: [RedisArgument] { [key] }
    public var key: RedisArgument
    public var value: RedisArgument
    public var expiry: Duration?
    public var onlyIfAbsent: Bool
    public init(_ key: RedisArgument, _ value: RedisArgument, expiry: Duration? = nil, onlyIfAbsent: Bool = false) {
        self.key = key
        self.value = value
        self.expiry = expiry
        self.onlyIfAbsent = onlyIfAbsent
    }
    public var arguments: [RedisArgument] {
        var a: [RedisArgument] = ["SET", key, value]
        if let expiry { a += ["PX", RedisArgument(expiry.milliseconds)] }
        if onlyIfAbsent { a.append("NX") }
        return a
    }
    public func decode(_ reply: RESPValue) throws(RedisError) -> Bool { !reply.isNull }
}

/// `DEL key...`: how many keys were removed.
public struct DEL: RedisCommand {
    public var keysAffected: [RedisArgument] { keys }
    public var keys: [RedisArgument]
    public init(_ keys: RedisArgument...) { self.keys = keys }
    public init(keys: [RedisArgument]) { self.keys = keys }
    public var arguments: [RedisArgument] { ["DEL"] + keys }
    public func decode(_ reply: RESPValue) throws(RedisError) -> Int {
        guard let n = reply.int else { throw unexpected(reply, "integer") }
        return n
    }
}

/// `EXISTS key...`: how many of the keys exist.
public struct EXISTS: RedisCommand {
    public var keysAffected: [RedisArgument] { keys }
    public var isReadOnly: Bool { true }
    public var keys: [RedisArgument]
    public init(_ keys: RedisArgument...) { self.keys = keys }
    public init(_ keys: [RedisArgument]) { self.keys = keys }
    public var arguments: [RedisArgument] { ["EXISTS"] + keys }
    public func decode(_ reply: RESPValue) throws(RedisError) -> Int {
        guard let n = reply.int else { throw unexpected(reply, "integer") }
        return n
    }
}

/// `INCRBY key n`: the new value.
public struct INCRBY: RedisCommand {
    public var keysAffected: [RedisArgument] { [key] }
    public var key: RedisArgument
    public var increment: Int
    public init(_ key: RedisArgument, by increment: Int = 1) {
        self.key = key
        self.increment = increment
    }
    public var arguments: [RedisArgument] { ["INCRBY", key, RedisArgument(increment)] }
    public func decode(_ reply: RESPValue) throws(RedisError) -> Int {
        guard let n = reply.int else { throw unexpected(reply, "integer") }
        return n
    }
}

/// `FLUSHALL`.
public struct FLUSHALL: RedisCommand {
    public typealias Response = RESPValue
    public init() {}
    public var arguments: [RedisArgument] { ["FLUSHALL"] }
}
