import Foundation
import OrderShop

/// Creates sent the way a careful client sends them: with an `Idempotency-Key`, and again with
/// the same key when the answer did not come (a timeout, a lost connection, a 5xx, a 503 "may
/// have been applied"). The guarantee under test: however often a create is retried with its
/// key, it makes its entities once (the checker's "keyed create made twice").
///
/// Faults alone rarely lose the answer of a create that ran (the script must finish just before
/// the connection, the service or Redis goes), so the load also drops one answer in ten on
/// purpose and retries: the replay path runs hundreds of times per run, under every fault.
extension LoadGenerator {
    /// Attempts per create at most (the first and up to three retries).
    static let createAttempts = 4
    /// The error of a record whose 2xx answer the load dropped on purpose.
    static var droppedAnswer: String { History.droppedAnswer }

    static func newTrace() -> String { "chaos-" + UUID().uuidString.lowercased() }

    /// POSTs a create of `items` entities with its trace as its `Idempotency-Key`, retrying with
    /// the same trace and key while the outcome is unknown. Every attempt is recorded; answers
    /// the last one.
    func keyedCreate(_ path: String, body: JSONValue, type: String, items: Int, rng: inout SplitMix64) async -> CommandRecord {
        let trace = Self.newTrace()
        var attempt = 0
        while true {
            attempt += 1
            let last = attempt == Self.createAttempts
            let record = await send(
                .POST, path, body: body, action: "created", type: type, ids: [], trace: trace, idempotencyKey: trace, keyedItems: items,
                dropAnswer: !last && rng.below(10) == 0)
            guard record.outcome == .unknown, !last else { return record }
            do { try await Task.sleep(for: .milliseconds(50 + rng.below(200))) } catch { return record }
        }
    }
}
