import Logging
import RedisClient
import ServiceLifecycle

/// Ends the stock reservations that an order change left open (its process died or stalled
/// between ``OrderSteps``' steps): each one open for longer than ``grace`` is aborted unless its
/// order change was committed, then finished, so that its units are either the order's or back
/// in stock. It runs in the order service's process; two of them (two order services) do no
/// harm: each step is idempotent, and the decision is made once, in one atomic write.
public struct ReservationReaper: Service {
    /// How long a reservation may stay open before it is the reaper's. An order change takes
    /// three round trips between its first and last step (about 1 ms here); 10 s leaves room
    /// for a paused or overloaded process without keeping stock reserved for long.
    public static let defaultGrace: Duration = .seconds(10)

    let steps: OrderSteps
    let grace: Duration
    let interval: Duration
    let logger: Logger
    /// Deliberate defects for chaos runs (`ordershop serve order --planted-bug ...`).
    public enum PlantedBug: String, Sendable, CaseIterable {
        /// Every reservation is finished as committed, without deciding: stock taken for an
        /// order that never came stays taken.
        case commitsAll = "reaper-commits-all"
        /// The aborted decisions are deleted with the reservations: the late step 2 of a
        /// process that stalled past the grace time makes its change without its stock.
        case forgetsAborts = "reaper-forgets-aborts"
    }

    let plantedBug: PlantedBug?

    public init(
        store: EventStore, grace: Duration = Self.defaultGrace, interval: Duration = .seconds(1), logger: Logger, plantedBug: PlantedBug? = nil
    ) {
        steps = OrderSteps(store: store)
        self.grace = grace
        self.interval = interval
        self.logger = logger
        self.plantedBug = plantedBug
    }

    public func run() async throws {
        // Ends on cancellation (the sleep throws) or on the group's graceful shutdown.
        do {
            try await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    do {
                        let ended = try await reapOnce()
                        if ended > 0 { logger.notice("ended \(ended) stock reservation(s) left open for over \(grace) by an order change that did not finish") }
                    } catch is CancellationError {
                        return
                    } catch {
                        // Why, not a client's advice (trial M logged "503: the command may have
                        // been applied ... retry a create with the same Idempotency-Key").
                        let why = (error as? ShopError).map { $0.uncertainty ?? $0.message } ?? "\(error)"
                        logger.warning("stock reservation reaper: \(why); trying again in \(interval)")
                    }
                    try await Task.sleep(for: interval)
                }
            }
        } catch is CancellationError {
            return
        }
    }

    /// One pass over the reservations due, stock partition by stock partition: answers how many
    /// it ended. A reservation with parts in several partitions is ended in all of them at once
    /// (``OrderSteps/finish(_:_:plantedForgetsAborts:)``), found from whichever comes first.
    /// A partition (or an order partition's decisions) that fails, its primary failing over, holds
    /// up none of the others: the pass goes on, then throws the first failure.
    func reapOnce() async throws -> Int {
        var ended = 0
        var failure: (any Error)?
        for p in 0..<steps.layout.partitions(of: .inventory) {
            try Task.checkCancellation()
            ended += await reap(p, failure: &failure)
        }
        if let failure { throw failure }
        return ended
    }

    /// The reservations due in stock partition `p`, each order partition's decisions apart.
    private func reap(_ p: Int, failure: inout (any Error)?) async -> Int {
        var ended = 0
        while !Task.isCancelled {
            let due: [OrderSteps.Reserved]
            do {
                due = try await steps.due(in: p, grace: grace, limit: 100)
            } catch {
                failure = failure ?? error
                return ended
            }
            if due.isEmpty { return ended }
            var failed = false
            for group in Dictionary(grouping: due, by: { steps.layout.partition(of: .order, id: $0.rid) }).values {
                do {
                    let decisions = plantedBug == .commitsAll ? group.map { _ in .committed } : try await steps.abort(group.map(\.rid), byReaper: true)
                    ended += try await steps.finish(group, decisions, plantedForgetsAborts: plantedBug == .forgetsAborts)
                } catch {
                    failure = failure ?? error
                    failed = true
                }
            }
            // A failed group would be due again at once: the next pass tries it.
            if due.count < 100 || failed { return ended }
        }
        return ended
    }
}
