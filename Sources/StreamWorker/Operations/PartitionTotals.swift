import RedisClient

extension GroupStatus {
    /// One group over the partitions of a logical stream (``PartitionedStream``): what
    /// `ordershop status` and the dashboard show for it. Counts are summed (length, lag,
    /// pending, dead letters; a consumer's pending), ages are the worst (the oldest pending
    /// entry of any partition, a consumer's most recent activity in any), the last id is the
    /// newest of any partition. The lag is unknown (nil) when one partition's is, and counted
    /// when one partition's was. `partitions` must all be of `group`.
    public static func merging(_ partitions: [GroupStatus], stream: String) -> GroupStatus? {
        guard let first = partitions.first else { return nil }
        var merged = GroupStatus(
            stream: stream, group: first.group, length: 0, lastID: "0-0", lag: 0, lagCounted: false, pending: 0,
            oldestPendingID: nil, oldestPendingAge: nil, consumers: [], deadLetters: 0, partitions: partitions.count)
        var consumers: [String: Consumer] = [:]
        for p in partitions {
            merged.length += p.length
            if let last = StreamID(p.lastID), last > (StreamID(merged.lastID) ?? .zero) { merged.lastID = p.lastID }
            merged.lag = merged.lag.flatMap { total in p.lag.map { total + $0 } }
            merged.lagCounted = merged.lagCounted || p.lagCounted
            merged.pending += p.pending
            if let age = p.oldestPendingAge, age > (merged.oldestPendingAge ?? -1) {
                merged.oldestPendingAge = age
                merged.oldestPendingID = p.oldestPendingID
            }
            merged.deadLetters += p.deadLetters
            for c in p.consumers {
                var total = consumers[c.name] ?? Consumer(name: c.name, pending: 0, idleMilliseconds: c.idleMilliseconds)
                total.pending += c.pending
                total.idleMilliseconds = min(total.idleMilliseconds, c.idleMilliseconds)
                consumers[c.name] = total
            }
        }
        merged.consumers = consumers.values.sorted { $0.name < $1.name }
        return merged
    }
}
