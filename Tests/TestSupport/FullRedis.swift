import RedisClient

/// Writes keys without an expiry (10 kB each) until Redis refuses one (noeviction at its
/// `maxmemory`, or an evicting policy with nothing left it may evict) or `limit` are written;
/// the refusal, if any.
public func fillRedis(_ pool: any RedisClientProtocol, limit: Int = 3000) async -> RedisError? {
    let value = RedisArgument(bytes: [UInt8](repeating: 0x78, count: 10_000))
    for i in 0..<limit {
        let key = RedisArgument("fill:\(i)")
        do {
            _ = try await pool.send(RawCommand(["SET", key, value], keys: [key]))
        } catch {
            return (error as? RedisError) ?? RedisError(.io, "\(error)")
        }
    }
    return nil
}

/// `CONFIG SET maxmemory value` ("4mb"; "0": no limit).
public func setMaxmemory(_ pool: any RedisClientProtocol, _ value: String) async throws {
    _ = try await pool.send(RawCommand(["CONFIG", "SET", "maxmemory", RedisArgument(value)], keys: []))
}

/// Fills Redis until it refuses a write (throws when it never does), then lowers its limit to
/// 1 MB, well below what it holds: at the edge of the limit a freed buffer lets a small write
/// through (a review: a test passed by that slack).
public func overfillRedis(_ pool: any RedisClientProtocol) async throws {
    guard let refusal = await fillRedis(pool), refusal.code == .outOfMemory else {
        throw RedisError(.unexpectedReply, "Redis never refused a write while it was filled")
    }
    try await setMaxmemory(pool, "1mb")
}
