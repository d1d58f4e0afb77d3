import Foundation
import RedisClient

extension EventStore {
    /// The events of an entity type from its three streams (after the given entry ids, one per
    /// stream in ``EventAction`` order; all when nil), with the last entry id read from each.
    public func events(_ type: EntityType, after: [String]? = nil, pageSize: Int = 1000) async throws -> (events: [RecordedEvent], lastIDs: [String]) {
        var events: [RecordedEvent] = []
        var lastIDs: [String] = []
        for (i, action) in EventAction.allCases.enumerated() {
            let stream = type.stream(action)
            var last = after?[i] ?? "0-0"
            var start = last == "0-0" ? "-" : "(" + last
            while true {
                let page = try await pool.send(XRANGE(RedisArgument(stream), start: start, end: "+", count: pageSize))
                for entry in page {
                    if let e = RecordedEvent(entry, action: action) { events.append(e) }
                    last = entry.id
                }
                if page.count < pageSize { break }
                start = "(" + last
            }
            lastIDs.append(last)
        }
        return (events, lastIDs)
    }

    /// The state of an entity type replayed from its streams.
    public func replay(_ type: EntityType) async throws -> Projection {
        Projection(try await events(type).events)
    }

    /// What a rebuild did.
    public struct RebuildReport: Sendable, Hashable, CustomStringConvertible {
        public var type: EntityType
        public var events: Int
        public var live: Int
        public var deleted: Int
        public var ignored: Int
        /// Swaps refused because a command appended an event meanwhile (the new events were then read and applied).
        public var retries: Int

        public var description: String {
            "\(type): \(events) events -> \(live) live, \(deleted) deleted, \(ignored) ignored (repeated or late)"
                + (retries > 0 ? ", \(retries) retries" : "")
        }
    }

    /// Rebuilds an entity type's read model from its streams.
    ///
    /// The new read model is written beside the live one and swapped in by a script that first
    /// checks that no event was appended meanwhile (else it reads the new events and tries
    /// again), so commands may keep running during a rebuild and nothing they wrote is lost.
    public func rebuild(_ type: EntityType, maxAttempts: Int = 100) async throws -> RebuildReport {
        var events: [RecordedEvent] = []
        var lastIDs: [String]? = nil
        for attempt in 0..<maxAttempts {
            let (new, last) = try await self.events(type, after: lastIDs)
            events += new
            lastIDs = last
            let projection = Projection(events)
            let staging = type.keys.staging(UUID().uuidString.lowercased())
            try await writeStaging(projection, type: type, keys: staging)
            let keys = (type.streams + type.keys.all + staging).map { RedisArgument($0) }
            let reply = try await pool.evaluate(Self.swapScript, keys: keys, arguments: last.map { RedisArgument($0) })
            if reply.array?.first?.string == "ok" {
                let deleted = projection.states.values.filter(\.deleted).count
                return RebuildReport(
                    type: type, events: events.count, live: projection.states.count - deleted, deleted: deleted,
                    ignored: projection.ignored, retries: attempt)
            }
            _ = try await pool.send(DEL(keys: staging.map { RedisArgument($0) }))
        }
        throw RedisError(.transactionAborted, "\(type) events kept arriving; rebuild gave up after \(maxAttempts) attempts")
    }

    private func writeStaging(_ projection: Projection, type: EntityType, keys staging: [String]) async throws {
        // Same order as ReadModelKeys.all: entities, versions, tombstones, ids, seq, unique.
        let (entities, versions, tombstones, ids, sequence, unique) = (staging[0], staging[1], staging[2], staging[3], staging[4], staging[5])
        var commands: [[RedisArgument]] = [["DEL"] + staging.map { RedisArgument($0) }]
        func hset(_ key: String, _ pairs: [(String, RedisArgument)]) {
            for chunk in stride(from: 0, to: pairs.count, by: 500) {
                var c: [RedisArgument] = ["HSET", RedisArgument(key)]
                for (f, v) in pairs[chunk..<min(chunk + 500, pairs.count)] { c += [RedisArgument(f), v] }
                commands.append(c)
            }
        }
        let live = projection.live
        hset(entities, live.map { ($0.id, RedisArgument(bytes: $0.state.json)) })
        hset(versions, projection.states.map { ($0.key, RedisArgument($0.value.version)) })
        hset(tombstones, projection.states.filter(\.value.deleted).map { ($0.key, RedisArgument(bytes: $0.value.json)) })
        for chunk in stride(from: 0, to: live.count, by: 500) {
            var c: [RedisArgument] = ["ZADD", RedisArgument(ids)]
            for (i, e) in live[chunk..<min(chunk + 500, live.count)].enumerated() {
                let score: Int = chunk + i + 1
                c += [RedisArgument(score), RedisArgument(e.id)]
            }
            commands.append(c)
        }
        let created = projection.states.count
        commands.append(["SET", RedisArgument(sequence), RedisArgument(created)])
        if let field = type.uniqueField {
            hset(unique, live.compactMap { e in
                guard case .object(let o)? = try? JSONCoding.decode(JSONValue.self, from: e.state.json), case .string(let v)? = o[field] else { return nil }
                return (v, RedisArgument(e.id))
            })
        }
        for reply in try await pool.pipeline(commands) { try reply.throwingServerError() }
    }

    /// KEYS: the 3 streams, the 6 live keys, the 6 staging keys. ARGV: the last entry id read from each stream.
    static let swapScript = RedisScript(
        """
        for i = 1, 3 do
          local last = redis.call('XREVRANGE', KEYS[i], '+', '-', 'COUNT', 1)
          local id = last[1] and last[1][1] or '0-0'
          if id ~= ARGV[i] then return {'moved', KEYS[i]} end
        end
        for i = 1, 6 do
          local live, staged = KEYS[3 + i], KEYS[9 + i]
          if redis.call('EXISTS', staged) == 1 then redis.call('RENAME', staged, live) else redis.call('DEL', live) end
        end
        return {'ok'}
        """)
}
