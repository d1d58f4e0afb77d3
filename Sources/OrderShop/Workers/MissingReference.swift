import StreamWorker

/// An event refers to an entity the read model does not have: an order's customer or product,
/// a billing's order. Not ``MalformedEvent``: the entity may only not be visible yet, so the
/// entry is retried like any failed handling (``WorkerConfiguration/maxDeliveries`` deliveries,
/// ``Backoff/shopWorkers`` apart) and dead-lettered with this text only if it is still missing.
///
/// Why: after a replicated Redis fails over, a worker's pool can still read the demoted primary
/// until its role check moves it (``RedisConfiguration/roleCheckInterval``, 1 s), and a customer
/// made through the promoted one is not there yet. Dead-lettered at once, such orders needed a
/// replay by hand (a user-style failover trial, 2026-12-05). An entity that never comes (lost
/// to the failover with an unconfirmed write, or an event from another publisher) still ends in
/// the dead letters, 1.9-3.75 s after its first delivery. A name that a managed service moves
/// more slowly than that (DNS time to live) can still dead-letter such an event: replay it with
/// `ordershop dlq replay` once the failover is over.
struct MissingReference: Error, Sendable, CustomStringConvertible {
    /// What the event is about (`order <id>`).
    let what: String
    let type: EntityType
    let id: String

    var description: String { "\(what) refers to \(type) \(id), which does not exist" }
}

extension Backoff {
    /// The retry backoff of OrderShop's workers (`ordershop work`, `ordershop up`): 250 ms
    /// doubling (spread over 50-100 %), so that an entry's five deliveries are at least 1.9 s
    /// apart from first to last (at most 3.75 s): longer than the 1-s role check a
    /// ``MissingReference`` may wait for, plus a reconnect. The library's default (100 ms) gives
    /// 0.75-1.5 s.
    public static let shopWorkers = Backoff(initial: .milliseconds(250))
}
