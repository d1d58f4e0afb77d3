import RedisClient

/// Where an entity type's three event streams stood at one instant: for each, the last id it
/// generated and how many entries were ever added to it (`entries-added`, which trimming does
/// not lower), read together by one script, so that no command of that type falls in between.
///
/// A snapshot records the cut it covers; a rebuild compares a new cut with it to know how many
/// entries each stream must still hold after the snapshot's position.
public struct StreamCut: Sendable, Hashable, CustomStringConvertible {
    public struct Position: Sendable, Hashable {
        public var stream: String
        /// The last id the stream generated (0-0 for a stream that never existed).
        public var lastID: StreamID
        /// Entries ever added to the stream (XINFO STREAM `entries-added`).
        public var entriesAdded: Int
        /// The oldest entry still in the stream, nil when it is empty.
        public var firstID: StreamID?
    }

    /// One per stream, in ``EventAction`` order.
    public var positions: [Position]

    public var description: String {
        positions.map { "\($0.stream)@\($0.lastID)#\($0.entriesAdded)" }.joined(separator: " ")
    }

    /// The cut before any event: what a rebuild without a snapshot starts from.
    public static func origin(_ partition: EntityPartition) -> StreamCut {
        StreamCut(positions: partition.streams.map { Position(stream: $0, lastID: .zero, entriesAdded: 0, firstID: nil) })
    }

    /// Reads the current cut of an entity type's streams (one script: one instant).
    public static func read(_ partition: EntityPartition, pool: any RedisClientProtocol) async throws -> StreamCut {
        try parse(try await pool.evaluate(script, keys: partition.streams.map { RedisArgument($0) }), partition: partition)
    }

    /// A cut from the reply of ``lua``'s `stream_cut`.
    static func parse(_ reply: RESPValue, partition: EntityPartition) throws -> StreamCut {
        let rows = reply.array ?? []
        guard rows.count == 3 else { throw RedisError(.unexpectedReply, "stream cut script answered \(reply)") }
        var positions: [Position] = []
        for (stream, row) in zip(partition.streams, rows) {
            let f = row.array ?? []
            guard f.count == 3, let last = f[0].string.flatMap({ StreamID($0) }), let added = f[1].int else {
                throw RedisError(.unexpectedReply, "stream cut script answered \(reply)")
            }
            guard added >= 0 else {
                throw RedisError(.unexpectedReply, "\(stream): Redis reports no entries-added (Redis 7 or later is needed for safe retention)")
            }
            positions.append(Position(stream: stream, lastID: last, entriesAdded: added, firstID: f[2].string.flatMap { StreamID($0) }))
        }
        return StreamCut(positions: positions)
    }

    /// `stream_cut(keys)`: per stream `{last-generated-id, entries-added (-1 if unknown), first id or ''}`.
    static let lua = """
        local function stream_cut(keys)
          local out = {}
          for i = 1, #keys do
            if redis.call('EXISTS', keys[i]) == 0 then
              out[i] = {'0-0', 0, ''}
            else
              local info = redis.call('XINFO', 'STREAM', keys[i])
              local f = {}
              for j = 1, #info, 2 do f[info[j]] = info[j + 1] end
              local first = f['first-entry']
              out[i] = {f['last-generated-id'], f['entries-added'] or -1, (first and first[1]) or ''}
            end
          end
          return out
        end

        """

    /// KEYS: the streams.
    static let script = RedisScript(lua + "return stream_cut(KEYS)")
}
