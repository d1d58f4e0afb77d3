import OrderShop
import RedisClient
import StreamWorker

/// One fault of the schedule: what, when, to whom, and its random parameters. The schedule is a
/// pure function of the seed and the options, so a seed reproduces it exactly.
public struct PlannedFault: Codable, Sendable, Hashable {
    /// Seconds after the load started.
    public var at: Double
    public var kind: FaultKind
    /// For worker faults: `crm` or `billing`, and the worker's slot.
    public var worker: String?
    public var slot: Int?
    /// Restart delay (kill, term, redis), pause length beyond the lease (pause), stall or latency length.
    public var seconds: Double
    /// Added latency (latency).
    public var milliseconds: Int?
    /// Which malformed shape (malformed) or how many entries to repeat (duplicate), and into
    /// which stream.
    public var variant: Int?
    public var stream: String?
}

/// The streams the workers read, with their groups. In a shop of several partitions
/// (``ShopLayout``) each logical stream is its partition streams, each a subscription of its own
/// (its group, markers, dead letters and replay stream): the checker holds each to its rules.
public enum WorkerStreams {
    /// The logical streams.
    public static let crm = ["events:{customer}_created", "events:{customer}_deleted", "events:{order}_created"]
    public static let billing = ["events:{order}_created", "events:{billing}_created"]

    /// The streams `group` reads in `layout`.
    public static func streams(of group: String, in layout: ShopLayout) -> [String] {
        (group == "crm" ? crm : billing).flatMap { partitions(of: $0, in: layout) }
    }

    /// (stream, group) for every subscription.
    public static func subscriptions(in layout: ShopLayout) -> [(stream: String, group: String)] {
        streams(of: "crm", in: layout).map { ($0, "crm") } + streams(of: "billing", in: layout).map { ($0, "billing") }
    }

    /// Every stream a worker reads, once.
    public static func all(in layout: ShopLayout) -> [String] {
        Array(Set(streams(of: "crm", in: layout) + streams(of: "billing", in: layout))).sorted()
    }

    /// The groups reading a stream (a partition stream: those of its logical stream).
    public static func groups(of stream: String) -> [String] {
        let logical = logical(stream)
        return (crm.contains(logical) ? ["crm"] : []) + (billing.contains(logical) ? ["billing"] : [])
    }

    /// The partition streams of a logical event stream in `layout` (itself with one partition).
    public static func partitions(of logical: String, in layout: ShopLayout) -> [String] {
        guard let (type, action) = typeAndAction(of: logical) else { return [logical] }
        return layout.partitions(type).map { $0.stream(action) }
    }

    /// The entity type and action of a logical event stream.
    public static func typeAndAction(of logical: String) -> (EntityType, EventAction)? {
        for type in EntityType.allCases {
            for action in EventAction.allCases where type.stream(action) == logical { return (type, action) }
        }
        return nil
    }

    /// The logical event stream a stream is a partition of (itself when it is none).
    public static func logical(_ stream: String) -> String {
        guard let partition = PartitionedStream.parse(stream) else { return stream }
        for type in EntityType.allCases {
            for action in EventAction.allCases where PartitionedStream(type.stream(action)).base == partition.name { return type.stream(action) }
        }
        return stream
    }
}

extension Dictionary where Key == String, Value == [StreamEntry] {
    /// The entries of every partition of one of `type`'s streams in `layout`.
    func entries(of type: EntityType, _ action: EventAction, in layout: ShopLayout) -> [StreamEntry] {
        layout.partitions(type).flatMap { self[$0.stream(action)] ?? [] }
    }
}

public enum FaultSchedule {
    /// A cluster fault's target: the shards in turn (from a random one, so that three cluster
    /// faults hit all three), then a key the shop writes in it (``Topology/clusterTargetsByShard(in:)``).
    private static func clusterTarget(_ rng: inout SplitMix64, turn: inout Int?, layout: ShopLayout) -> String {
        let shards = Topology.clusterTargetsByShard(in: layout)
        let next = turn ?? rng.below(shards.count)
        turn = next + 1
        let shard = shards[next % shards.count]
        return shard[rng.below(shard.count)]
    }

    /// The schedule for a run. Faults fall between a warm-up and a quiet tail, so that every
    /// process is back before the load ends. Every enabled kind appears at least once, and
    /// SIGKILL at least once per worker kind.
    public static func make(options: ChaosOptions) -> [PlannedFault] {
        var rng = SplitMix64(seed: options.seed)
        let enabled = FaultKind.allCases.filter { options.faults.contains($0) }
        guard !enabled.isEmpty else { return [] }
        let warmup = min(10, options.duration * 0.1)
        let tail = min(15, options.duration * 0.15)
        let window = max(1, options.duration - warmup - tail)
        var kinds: [FaultKind] = enabled
        if enabled.contains(.kill) { kinds.append(.kill) }
        let total = max(kinds.count, Int(window / options.meanFaultInterval))
        while kinds.count < total { kinds.append(enabled[rng.below(enabled.count)]) }
        // Fisher-Yates with our generator.
        for i in stride(from: kinds.count - 1, to: 0, by: -1) { kinds.swapAt(i, rng.below(i + 1)) }
        let slotWidth = window / Double(kinds.count)
        var kills = 0
        var shardTurn: Int?
        var out: [PlannedFault] = []
        for (i, kind) in kinds.enumerated() {
            let at = warmup + slotWidth * (Double(i) + rng.uniform(0.1, 0.9))
            var fault = PlannedFault(at: (at * 10).rounded() / 10, kind: kind, seconds: 0)
            switch kind {
            case .kill, .term, .pause:
                var worker = rng.below(2) == 0 ? "crm" : "billing"
                if kind == .kill {
                    // The first two kills hit one worker kind each.
                    if kills == 0 { worker = "crm" } else if kills == 1 { worker = "billing" }
                    kills += 1
                }
                fault.worker = worker
                fault.slot = rng.below(options.workersPerKind)
                fault.seconds = kind == .pause ? rng.uniform(1, 4) : rng.uniform(0.5, 5)
            case .redis:
                fault.seconds = rng.uniform(0.2, 3)
            case .redisFull:
                fault.seconds = rng.uniform(2, 6)
            case .orderCrash:
                fault.seconds = rng.uniform(0.5, 3)
            case .orderPause:
                fault.seconds = rng.uniform(2, 4)  // beyond the reaper's 10 s grace and 1 s interval
            case .failover:
                fault.seconds = rng.uniform(0.5, 3)  // detection and election, as a managed service takes
            case .promotion:
                fault.seconds = 0
            case .partition:
                fault.seconds = rng.uniform(2, 5)  // commands wait up to 2 s each for the replica meanwhile
            case .primaryKill:
                fault.seconds = rng.uniform(0.5, 3)  // the dead node stays down this long after its replica took over
                fault.stream = clusterTarget(&rng, turn: &shardTurn, layout: options.layout)
            case .primaryPause:
                fault.seconds = rng.uniform(0.5, 3)  // frozen this long after its replica took over
                fault.stream = clusterTarget(&rng, turn: &shardTurn, layout: options.layout)
            case .nodePartition:
                fault.seconds = rng.uniform(0.5, 3)  // the partition holds this long after the majority promoted the replica
                fault.stream = clusterTarget(&rng, turn: &shardTurn, layout: options.layout)
            case .forcedFailover:
                fault.seconds = rng.uniform(2, 5)  // commands wait up to 2 s each for the replica meanwhile
                fault.stream = clusterTarget(&rng, turn: &shardTurn, layout: options.layout)
            case .clusterFailover, .slotMigration:
                fault.stream = clusterTarget(&rng, turn: &shardTurn, layout: options.layout)
            case .reset:
                fault.seconds = 0
            case .stall:
                fault.seconds = rng.uniform(7, 10)  // longer than the 5 s command timeout
            case .latency:
                fault.seconds = rng.uniform(3, 8)
                fault.milliseconds = 50 + rng.below(400)
            case .malformed:
                fault.variant = rng.below(3)
                let streams = WorkerStreams.all(in: options.layout)
                fault.stream = streams[rng.below(streams.count)]
            case .msgOutage:
                // 5-60 s, at most a third of the fault window (a short run cannot hold a minute).
                fault.seconds = rng.uniform(5, max(5.5, min(60, window / 3)))
            case .trim, .rebuild:
                fault.seconds = 0
            case .replay:
                let streams = WorkerStreams.all(in: options.layout)
                fault.stream = streams[rng.below(streams.count)]
                let groups = WorkerStreams.groups(of: fault.stream!)
                fault.worker = groups[rng.below(groups.count)]
                fault.variant = rng.below(3)
            case .duplicate:
                fault.variant = 5 + rng.below(16)  // entries repeated
                let streams = WorkerStreams.all(in: options.layout)
                fault.stream = streams[rng.below(streams.count)]
            }
            fault.seconds = (fault.seconds * 10).rounded() / 10
            out.append(fault)
        }
        return out
    }
}
