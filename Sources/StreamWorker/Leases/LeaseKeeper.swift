import RedisClient

/// Every lease/4, XCLAIM JUSTID (ownership checked) the entries this consumer holds, so that an
/// entry's idle time never gets near the lease while its worker lives, even when the process
/// is starved of CPU for a while. Runs until its task is cancelled (after the last settle).
struct LeaseKeeper: Sendable {
    let context: SubscriptionContext

    func run() async {
        let interval = context.configuration.lease / 4
        while true {
            do {
                try await Task.sleep(for: interval)
            } catch {
                return
            }
            await refresh()
        }
    }

    func refresh() async {
        if context.configuration.plantedBug == .noLeaseRefresh { return }
        let ids = context.held.sorted()
        for start in stride(from: 0, to: ids.count, by: 1000) {
            if Task.isCancelled { return }
            let chunk = Array(ids[start..<min(start + 1000, ids.count)])
            do {
                let owned = try await context.client.run(
                    RefreshLeaseCall(stream: context.stream, group: context.group, consumer: context.consumer, ids: chunk))
                // Either settled meanwhile (fine) or claimed by another consumer after this
                // process stalled past its lease: then the settle will be refused.
                let lost = chunk.filter { !owned.contains($0) && context.held.contains($0) }
                if !lost.isEmpty {
                    context.logger.debug("lease refresh: entries not ours any more", metadata: ["count": "\(lost.count)"])
                }
            } catch {
                if FailureKind(error) == .cancelled { return }
                context.redisWarnings.leases.log(context.logger, "lease refresh failed", metadata: ["error": "\(error)"])
            }
        }
    }
}

/// ``WorkerScripts/refreshLease``: the ids still owned.
struct RefreshLeaseCall: ScriptCall {
    var script: RedisScript { WorkerScripts.refreshLease }
    let keys: [RedisArgument]
    let arguments: [RedisArgument]

    /// `ids` in ascending order.
    init(stream: String, group: String, consumer: String, ids: [StreamID]) {
        keys = [RedisArgument(stream)]
        arguments = [RedisArgument(group), RedisArgument(consumer)] + ids.map { RedisArgument($0) }
    }

    func decode(_ reply: RESPValue) throws -> Set<StreamID> {
        guard let ids = reply.array else { throw unexpected(reply) }
        return Set(ids.compactMap { $0.string.flatMap { StreamID($0) } })
    }
}
