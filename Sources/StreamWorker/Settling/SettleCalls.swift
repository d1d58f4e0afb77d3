import RedisClient

/// What the settle did with one entry.
enum SettleResult: Sendable, Equatable {
    /// Owned, marker new: effects applied, marker written, acked.
    case applied
    /// Owned, marker existed: acked, effects skipped.
    case duplicate
    /// Another consumer owns it now: nothing applied or acked.
    case foreign
    /// Not pending any more and its marker exists: someone settled it already.
    case alreadySettled
    /// One of its effects got an error reply from Redis (`error`): the `effectsRun` effects
    /// before it were applied, the rest not; neither marked nor acked.
    case effectsFailed(error: String, effectsRun: Int)
}

/// The settle of a batch (``WorkerScripts/settle``, or ``WorkerScripts/settlePlain`` without
/// markers): ownership check, markers, the handlers' effects and XACK in one atomic step.
struct SettleBatchCall: ScriptCall {
    struct Ack {
        var item: WorkItem
        var effects: [[RedisArgument]]
    }

    let script: RedisScript
    let keys: [RedisArgument]
    let arguments: [RedisArgument]
    let count: Int

    /// `acks` in ascending id order; `runEnds` from ``HeldEntries/runEnds(of:)``; `buckets`
    /// nil for the plain settle (no markers).
    init(
        script: RedisScript, stream: String, group: String, consumer: String, buckets: IdempotencyMarkers.Buckets?, acks: [Ack],
        runEnds: [Int]
    ) {
        self.script = script
        self.count = acks.count
        self.keys = [RedisArgument(stream)] + (buckets.map { [$0.current, $0.previous, $0.stale] } ?? []).map { RedisArgument($0) }
        var args: [RedisArgument] = [
            RedisArgument(group), RedisArgument(consumer), RedisArgument(Int(buckets?.expireAtMs ?? 0)), RedisArgument(acks.count),
            RedisArgument(runEnds.count),
        ]
        args.reserveCapacity(5 + runEnds.count + acks.count * 3)
        args.append(contentsOf: runEnds.map { RedisArgument($0) })
        for ack in acks {
            args.append(RedisArgument(ack.item.entry.id))
            if buckets == nil {
                args.append("")
            } else {
                guard let marker = ack.item.marker else { preconditionFailure("an idempotent ack without its marker: \(ack.item.entry.id)") }
                args.append(RedisArgument(marker))
            }
            args.append(RedisArgument(ack.effects.count))
            for effect in ack.effects {
                args.append(RedisArgument(effect.count))
                args.append(contentsOf: effect)
            }
        }
        self.arguments = args
    }

    func decode(_ reply: RESPValue) throws -> [SettleResult] {
        guard let codes = reply.array, codes.count == count else { throw unexpected(reply) }
        return try codes.map { code in
            switch code.int {
            case 1: return .applied
            case 2: return .duplicate
            case 3: return .foreign
            case 4: return .alreadySettled
            default:
                guard let failure = code.array, failure.count == 3, failure[0].int == 5, let run = failure[1].int,
                    let error = failure[2].string
                else { throw unexpected(reply) }
                return .effectsFailed(error: error, effectsRun: run)
            }
        }
    }
}

/// What the dead-letter script did with one entry.
enum DeadLetterResult: Int, Sendable {
    /// Not ours any more: left alone.
    case notOwned = 0
    /// Added to the dead letters and acked.
    case moved = 1
}

/// Moves entries to a group's dead letters (``WorkerScripts/deadLetter``).
struct DeadLetterCall: ScriptCall {
    struct Letter {
        var item: WorkItem
        var reason: String
        var error: String
    }

    var script: RedisScript { WorkerScripts.deadLetter }

    /// Fields of an entry its dead letter keeps. The script adds the letter with one `XADD` of
    /// the fields and seven metadata pairs through Lua's `unpack`, which fails past about 8,000
    /// values ("too many results to unpack"): an entry of 20,000 fields failed every settle, was
    /// reclaimed every few seconds and never left the group's pending entries (a review). Such
    /// a letter is marked (``cutMarker``: how many fields it lacks) and a replay leaves it where
    /// it is: it would deliver another event than the entry under the entry's id.
    static let maximumFields = 3_000

    /// The field of a dead letter that lacks fields of its entry: how many it lacks.
    static let cutMarker = "dlq.omitted_fields"

    let keys: [RedisArgument]
    let arguments: [RedisArgument]
    let count: Int

    init(stream: String, deadLetters: String, group: String, consumer: String, letters: [Letter]) {
        self.count = letters.count
        self.keys = [RedisArgument(stream), RedisArgument(deadLetters)]
        var args: [RedisArgument] = [RedisArgument(group), RedisArgument(consumer), RedisArgument(letters.count)]
        for letter in letters {
            let entry = letter.item.entry
            let kept = entry.fields.prefix(Self.maximumFields)
            let cut = entry.fields.count - kept.count
            var reason = letter.reason.clipped(toBytes: ClippedText.deadLetter)
            if cut > 0 {
                reason +=
                    " (the entry has \(entry.fields.count) fields: its dead letter keeps the first \(Self.maximumFields), as Lua passes at most 8,000 arguments to a call, and cannot be replayed; the whole entry is \(entry.id) in the stream until trimmed)"
            }
            args += [
                RedisArgument(entry.id), RedisArgument(reason), RedisArgument(letter.error.clipped(toBytes: ClippedText.deadLetter)),
                RedisArgument(letter.item.deliveryCount),
                RedisArgument(kept.count * 2 + (cut > 0 ? 2 : 0)),
            ]
            for field in kept {
                args.append(RedisArgument(field.name))
                args.append(RedisArgument(bytes: field.value))
            }
            if cut > 0 {
                args.append(RedisArgument(Self.cutMarker))
                args.append(RedisArgument(cut))
            }
        }
        self.arguments = args
    }

    func decode(_ reply: RESPValue) throws -> [DeadLetterResult] {
        guard let codes = reply.array, codes.count == count else { throw unexpected(reply) }
        return try codes.map { code in
            guard let value = code.int, let result = DeadLetterResult(rawValue: value) else { throw unexpected(reply) }
            return result
        }
    }
}
