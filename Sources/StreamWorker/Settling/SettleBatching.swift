/// How a subscription's settler gathers handled entries into one settle call (one script run
/// in Redis: markers, effects and XACK of the whole batch).
///
/// Why wait at all: a settle has a fixed cost in Redis (reading the call, starting the script,
/// checking ownership, writing the reply) whatever its batch, and a settler takes what
/// accumulated during its previous round trip. A stream spread over partitions divides that: on
/// a 3-primary cluster with 6 partitions each partition's settler saw a sixth of the events and
/// settled ~72 entries per call where one stream on one node settled ~330, and the cluster spent
/// 1.14-1.26x the Redis CPU per event of the one node. Gathering up to 400 entries for up to
/// 5 ms brought the cluster's settles to ~210 entries, its Redis CPU per event down by 3-7 %
/// and the ratio to 1.07-1.13 (`bench worker --cluster`, BENCHMARKS.md, 2026-12-04 night).
///
/// A settler waits only under sustained load: when entries were already queued as it came back
/// from its previous settle and they are fewer than ``target``. A settler that found nothing to
/// do settles the next entry at once, so a lightly loaded worker acks as soon as a handler
/// returns. What the wait delays is the ack and, in idempotent mode, the effects a handler
/// returned (by at most ``linger``); handlers are not held up (their slots are freed when they
/// return), nor are leases (refreshed while entries are held).
public struct SettleBatching: Sendable, Hashable {
    /// Entries a settle waits for (under sustained load). At least 1; 1 never waits.
    public var target: Int
    /// The longest a settle waits for ``target`` entries. `.zero`: never waits.
    public var linger: Duration

    public init(target: Int = 400, linger: Duration = .milliseconds(5)) {
        self.target = max(1, target)
        self.linger = max(.zero, linger)
    }

    /// Settle what is there, never waiting (how settlers worked before batching).
    public static let immediate = SettleBatching(target: 1, linger: .zero)
}
