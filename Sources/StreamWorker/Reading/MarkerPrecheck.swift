import RedisClient

/// Idempotent mode: flags the entries whose marker exists, so that they are acked without
/// calling the handler. A stage of its own so that a reader's next XREADGROUP overlaps the
/// previous batch's marker check. Advisory: the settle checks again atomically; if the check
/// fails, nothing is flagged and the settle still applies nothing twice.
struct MarkerPrecheck: Sendable {
    let context: SubscriptionContext
    let markers: IdempotencyMarkers
    let input: BatchQueue<WorkItem>
    let output: BatchQueue<WorkItem>

    init(context: SubscriptionContext, input: BatchQueue<WorkItem>, output: BatchQueue<WorkItem>) {
        self.context = context
        self.input = input
        self.output = output
        self.markers = IdempotencyMarkers(stream: context.identityStream, group: context.group, ttl: context.configuration.idempotencyTTL)
    }

    /// Checks until the input is finished and empty, or the task is cancelled.
    func run() async {
        while true {
            let items = await input.next()
            if items.isEmpty { return }
            output.append(contentsOf: await flaggingDuplicates(items))
        }
    }

    /// The items, those whose marker exists flagged as duplicates (an HMGET of the current and
    /// the previous marker hash, in one round trip for everything read since the last check).
    private func flaggingDuplicates(_ items: [WorkItem]) async -> [WorkItem] {
        // The planted bug ignores markers here too (else the pre-check would still catch them).
        if context.configuration.plantedBug == .noMarkerCheck { return items }
        let fields = items.compactMap { item in item.marker.map { RedisArgument($0) } }
        guard fields.count == items.count, !fields.isEmpty else { return items }
        let buckets = markers.buckets()
        let current = RedisArgument(buckets.current), previous = RedisArgument(buckets.previous)
        // Both hashes are in the stream's slot (StreamKeys): one node, one round trip.
        let (inCurrent, inPrevious) = await context.client.pipeline(
            RawCommand(["HMGET", current] + fields, keys: [current], readOnly: true),
            RawCommand(["HMGET", previous] + fields, keys: [previous], readOnly: true))
        let currentFound: [RESPValue], previousFound: [RESPValue]
        do {
            currentFound = try inCurrent.get().array ?? []
            previousFound = try inPrevious.get().array ?? []
        } catch {
            context.logger.debug("marker pre-check failed; the settle checks them", metadata: ["error": "\(error)"])
            return items
        }
        guard currentFound.count == items.count, previousFound.count == items.count else { return items }
        var flagged = items
        for i in flagged.indices where !currentFound[i].isNull || !previousFound[i].isNull { flagged[i].knownDuplicate = true }
        return flagged
    }
}
