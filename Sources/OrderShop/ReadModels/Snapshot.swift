import Foundation
import RedisClient

/// The folded state of an entity type's events up to a ``StreamCut``, kept in Redis so that the
/// events it covers may be trimmed from the streams without losing the record.
///
/// Built from events only (the previous snapshot plus the stream entries after it, up to a cut
/// read in one script), never copied from the read model, so a rebuild from it equals a replay
/// of the full history even when the read model was wrong. Written in one script (its states
/// renamed into place and its position set together), so a reader sees a whole snapshot or the
/// previous one, and never moved backwards: a snapshot older than the installed one is dropped.
public struct ReadModelSnapshot: Sendable, Hashable {
    /// The partition of the entity type whose events it folds (``ShopLayout``).
    public var partition: EntityPartition
    public var type: EntityType { partition.type }
    /// The events covered: every entry up to each stream's position.
    public var cut: StreamCut
    /// Epoch milliseconds when it was taken.
    public var takenAt: Int
    public var states: [String: Projection.State]
    /// Not stored: the states of the stored snapshot that are not their entity's JSON (one
    /// taken before rebuilds checked their events could hold one), left out when it was read;
    /// and for ``EventStore/takeSnapshot(_:)``, the entries it read that were not well-formed
    /// events, left out of the states too.
    public var malformed: [MalformedEntry] = []
    /// Not stored: for ``EventStore/takeSnapshot(_:)``, the ids with changes after the previous
    /// snapshot but no creation (``Projection/uncreated``), left out of the states.
    public var uncreated: [String] = []

    /// What rebuild, snapshot and trim say of ``uncreated`` ids: their count and the first 5,
    /// escaped, each at most 100 bytes (an id comes from an entry anyone may XADD: a newline in
    /// it would forge a line).
    public static func uncreatedNote(_ ids: [String]) -> String {
        "changes of \(ids.count) ids never created left out: "
            + ids.prefix(5).map { LogText.escaped($0, limit: 100) }.joined(separator: ", ") + (ids.count > 5 ? ", ..." : "")
    }

    /// Live entities in the snapshot.
    public var live: Int { states.values.filter { !$0.deleted }.count }
}

extension EventStore {
    /// The latest snapshot of an entity type, nil when none was ever taken.
    public func latestSnapshot(_ partition: EntityPartition) async throws -> ReadModelSnapshot? {
        let k = partition.keys
        let reply = try await pool.evaluate(
            Self.loadSnapshotScript, keys: [RedisArgument(k.snapshot), RedisArgument(k.snapshotStates)])
        guard let parts = reply.array, parts.count == 2 else { throw RedisError(.unexpectedReply, "snapshot load answered \(reply)") }
        let meta = Self.pairs(parts[0])
        guard let position = meta["position"], let added = meta["entries_added"] else { return nil }
        let ids = position.split(separator: " ").compactMap { StreamID($0) }
        let counts = added.split(separator: " ").compactMap { Int($0) }
        guard ids.count == 3, counts.count == 3 else {
            throw RedisError(.unexpectedReply, "\(k.snapshot) is malformed: position '\(position)', entries_added '\(added)'")
        }
        var states: [String: Projection.State] = [:]
        var malformed: [MalformedEntry] = []
        let raw = parts[1].array ?? []
        for i in stride(from: 0, to: raw.count - 1, by: 2) {
            guard let id = raw[i].string, let value = raw[i + 1].bytes, let state = Self.decodeState(value) else {
                throw RedisError(.unexpectedReply, "\(k.snapshotStates) holds a malformed state")
            }
            // A state folded in before rebuilds checked the shape ({"id":"z"} as a customer) is
            // left out as the events would be.
            if let reason = RecordedEvent.problem(ofEntity: state.json, id: id) ?? (state.deleted ? nil : partition.type.shapeProblem(state.json)) {
                malformed.append(MalformedEntry(stream: k.snapshotStates, entryID: id, reason: reason))
                continue
            }
            states[id] = state
        }
        let cut = StreamCut(positions: zip(partition.streams, zip(ids, counts)).map {
            StreamCut.Position(stream: $0.0, lastID: $0.1.0, entriesAdded: $0.1.1, firstID: nil)
        })
        var snapshot = ReadModelSnapshot(partition: partition, cut: cut, takenAt: meta["taken_at"].flatMap { Int($0) } ?? 0, states: states)
        snapshot.malformed = malformed
        return snapshot
    }

    /// Takes a snapshot of an entity type now: folds the latest snapshot and the events after it
    /// up to the current cut, and installs it. Throws ``StreamGapError`` when a stream lacks
    /// entries after the latest snapshot (then nothing is written). Safe while commands run, and
    /// beside another snapshot or trim: when one installs a newer snapshot and trims past the
    /// one this read, this starts over from the newer one, as a rebuild does (before, two
    /// `ordershop trim` at once failed 3 times in 80 with a false "trimmed past the latest
    /// snapshot", and `trim` beside `snapshot all` 2 in 40: a user-style run, 2026-12-05).
    @discardableResult
    public func takeSnapshot(_ partition: EntityPartition, maxAttempts: Int = 100) async throws -> ReadModelSnapshot {
        try await takeSnapshot(partition, maxAttempts: maxAttempts, afterReadingBase: {})
    }

    /// ``takeSnapshot(_:maxAttempts:)``, running `afterReadingBase` after each read of the latest
    /// snapshot (a test runs another trim there).
    func takeSnapshot(_ partition: EntityPartition, maxAttempts: Int, afterReadingBase: () async throws -> Void) async throws -> ReadModelSnapshot {
        var base = try await latestSnapshot(partition)
        try await afterReadingBase()
        var attempt = 1
        while true {
            do {
                return try await takeSnapshot(partition, from: base)
            } catch let gap as StreamGapError {
                guard attempt < maxAttempts, let latest = try await latestSnapshot(partition), latest.cut != base?.cut else { throw gap }
                base = latest
                try await afterReadingBase()
                attempt += 1
            }
        }
    }

    /// One try of ``takeSnapshot(_:maxAttempts:)`` from `base`.
    private func takeSnapshot(_ partition: EntityPartition, from base: ReadModelSnapshot?) async throws -> ReadModelSnapshot {
        let cut = try await StreamCut.read(partition, pool: pool)
        let new = try await events(partition, after: base?.cut ?? .origin(partition), upTo: cut)
        var projection = Projection(base: base?.states ?? [:])
        for e in Projection.ordered(new.events) { projection.apply(e) }
        var snapshot = ReadModelSnapshot(partition: partition, cut: cut, takenAt: Self.now(), states: projection.states)
        snapshot.malformed = (base?.malformed ?? []) + new.malformed
        snapshot.uncreated = projection.uncreated.keys.sorted()
        try await install(snapshot)
        return snapshot
    }

    /// Writes the states beside the installed ones, then swaps them in with the position, in one
    /// script that refuses to move the snapshot backwards (or, with `onlyIfNone`, to replace any
    /// snapshot). Returns whether it was installed.
    ///
    /// The staged states expire after ``stagingLifetime`` and are deleted when the install fails:
    /// trial M's snapshots refused during a slot's move (TRYAGAIN on the install's three keys)
    /// left their staged copies for ever, 1.1 MB each at 3,555 orders. Installed, they are
    /// made persistent again (RENAME keeps the expiry).
    @discardableResult
    func install(_ snapshot: ReadModelSnapshot, onlyIfNone: Bool = false) async throws -> Bool {
        let staging = try await stage(snapshot)
        do {
            return try await swapIn(snapshot, staging: staging, onlyIfNone: onlyIfNone)
        } catch {
            // Also after a lost answer: a late install finds no staged states and changes
            // nothing (``StagedSnapshotMissing``), where it would otherwise have put an empty
            // snapshot in place (a review).
            let key = RedisArgument(staging)
            _ = try? await pool.send(RawCommand(["DEL", key], keys: [key]))
            throw error
        }
    }

    /// Writes a snapshot's states beside the installed ones, expiring after
    /// ``stagingLifetime``; returns the staged key.
    func stage(_ snapshot: ReadModelSnapshot) async throws -> String {
        let staging = snapshot.partition.keys.snapshotStates + ":staging:" + RandomUUID.string()
        let stagingKey = RedisArgument(staging)
        var commands: [RawCommand] = [RawCommand(["DEL", stagingKey], keys: [stagingKey])]
        let states = Array(snapshot.states)
        for chunk in stride(from: 0, to: states.count, by: 500) {
            var c: [RedisArgument] = ["HSET", stagingKey]
            for (id, state) in states[chunk..<min(chunk + 500, states.count)] { c += [RedisArgument(id), RedisArgument(bytes: Self.encodeState(state))] }
            commands.append(RawCommand(c, keys: [stagingKey]))
        }
        if !states.isEmpty { commands.append(RawCommand(["PEXPIRE", stagingKey, RedisArgument(milliseconds: Self.stagingLifetime)], keys: [stagingKey])) }
        for result in await pool.pipeline(commands) { _ = try result.get() }
        return staging
    }

    /// How long staged states live if their install never runs (a process killed between the two).
    static let stagingLifetime: Duration = .seconds(3600)

    func swapIn(_ snapshot: ReadModelSnapshot, staging: String, onlyIfNone: Bool) async throws -> Bool {
        let k = snapshot.partition.keys
        let positions = snapshot.cut.positions
        let reply = try await pool.evaluate(
            Self.installSnapshotScript,
            keys: [RedisArgument(k.snapshot), RedisArgument(k.snapshotStates), RedisArgument(staging)],
            arguments: [
                RedisArgument(positions.map { "\($0.lastID)" }.joined(separator: " ")),
                RedisArgument(positions.map { "\($0.entriesAdded)" }.joined(separator: " ")),
                RedisArgument(snapshot.takenAt), RedisArgument(snapshot.live), RedisArgument(onlyIfNone ? "new" : "any"),
                RedisArgument(snapshot.states.count),
            ])
        let tag = reply.array?.first?.string
        if tag == "missing" { throw StagedSnapshotMissing(partition: snapshot.partition) }
        return tag == "ok"
    }

    /// "version deleted created-entry-id[ creation-score]\n" + JSON (the score in a shop of
    /// several partitions only, so a snapshot of one partition reads as it always did).
    static func encodeState(_ s: Projection.State) -> [UInt8] {
        Array("\(s.version) \(s.deleted ? 1 : 0) \(s.created)\(s.sequence.map { " \($0)" } ?? "")\n".utf8) + s.json
    }

    static func decodeState(_ bytes: [UInt8]) -> Projection.State? {
        guard let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) else { return nil }
        let head = String(decoding: bytes[..<newline], as: UTF8.self).split(separator: " ")
        guard head.count == 3 || head.count == 4, let version = Int(head[0]), let created = StreamID(head[2]) else { return nil }
        let sequence = head.count == 4 ? Int(head[3]) : nil
        if head.count == 4, sequence == nil { return nil }
        return Projection.State(json: Array(bytes[(newline + 1)...]), version: version, deleted: head[1] == "1", created: created, sequence: sequence)
    }

    static func pairs(_ value: RESPValue) -> [String: String] {
        let a = value.array ?? []
        var out: [String: String] = [:]
        for i in stride(from: 0, to: a.count - 1, by: 2) {
            if let k = a[i].string, let v = a[i + 1].string { out[k] = v }
        }
        return out
    }

    /// KEYS: snapshot meta, snapshot states. Returns `{meta pairs, state pairs}` read at one instant.
    static let loadSnapshotScript = RedisScript(
        """
        return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
        """)

    /// KEYS: snapshot meta, snapshot states, staged states. ARGV: positions, entries-added (both
    /// space-separated, per stream), taken-at, live count, `new` (install only where none exists) or
    /// `any`, the number of staged states. Returns `{'missing'}` (nothing changed) when states
    /// were staged but are gone (expired, or deleted after a lost answer), `{'ok'}`, `{'exists'}`
    /// for `new` where one exists, or `{'stale'}` when the
    /// installed snapshot is newer on some stream (the staged one is dropped in both refusals).
    static let installSnapshotScript = RedisScript(
        """
        if (tonumber(ARGV[6]) or 0) > 0 and redis.call('EXISTS', KEYS[3]) == 0 then return {'missing'} end
        local old = redis.call('HGET', KEYS[1], 'entries_added')
        if old and ARGV[5] == 'new' then
          redis.call('DEL', KEYS[3])
          return {'exists'}
        end
        if old then
          local new = {}
          for n in string.gmatch(ARGV[2], '%d+') do new[#new + 1] = tonumber(n) end
          local i = 1
          for n in string.gmatch(old, '%d+') do
            if tonumber(n) > (new[i] or 0) then
              redis.call('DEL', KEYS[3])
              return {'stale'}
            end
            i = i + 1
          end
        end
        if redis.call('EXISTS', KEYS[3]) == 1 then
          redis.call('RENAME', KEYS[3], KEYS[2])
          redis.call('PERSIST', KEYS[2])
        else
          redis.call('DEL', KEYS[2])
        end
        redis.call('HSET', KEYS[1], 'position', ARGV[1], 'entries_added', ARGV[2], 'taken_at', ARGV[3], 'entities', ARGV[4])
        return {'ok'}
        """)
}

/// A snapshot's staged states were gone when its install ran: nothing was installed.
public struct StagedSnapshotMissing: Error, CustomStringConvertible {
    public let partition: EntityPartition
    public var description: String {
        "the \(partition) snapshot's staged states were gone when it was to be installed (they expire after an hour, and are deleted when an install's answer is lost): nothing was installed; run it again"
    }
}
