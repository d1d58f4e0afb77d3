import Foundation
import RedisClient

/// Deliberate defects of the order changes, for chaos runs (`ordershop serve order --planted-bug ...`).
public enum OrderChangePlantedBug: String, Sendable, CaseIterable {
    /// Step 1 takes the units without checking the stock (its `amount < d` refusal gone): orders
    /// for the last units all succeed, and the stock goes below zero.
    case oversells = "order-oversells"
}

/// An order change (create, update, delete) in steps that each touch one slot, so that it runs
/// on a Redis Cluster where `{order}` and `{inventory}` live on different nodes:
///
/// 1. **prepare** (`{inventory}`): a reservation, keyed by its rid, takes the units the change
///    adds, checked against the stock: nothing is ever sold twice. It records the units the
///    change gives back, and is listed as open.
/// 2. **decide** (`{order}`): the order change itself, with its event, writes the decision
///    `committed` for the rid; unless the decision is `aborted` already, or (update, delete) the
///    order's version is not the one the reservation was made for.
/// 3. **finish** (`{inventory}`): committed, the units given back are returned; aborted, the
///    units taken are returned. The reservation is no longer open. Then a committed decision is
///    deleted; an aborted one is kept for a day (``OrderScripts/decisionTTLms``), so that the
///    step 2 of a process that stalled that long is still refused.
///
/// A process that dies between the steps leaves an open reservation: the
/// ``ReservationReaper`` finds it once it is older than its grace time, makes its decision
/// `aborted` unless it was committed (step 2 is one atomic write either way, so the late
/// command and the reaper cannot both win), and finishes it. So an order change is never left
/// half-made: its order without its stock taken, or stock taken for no order.
///
/// The rid of a create is the order's id (a retry with the `Idempotency-Key` reserves for the
/// same orders, see ``OrderScripts/claim``); that of an update or a deletion is its event id.
///
/// What is not atomic any more: the customer and product checks are reads before step 1. A
/// customer deleted between them and step 2 leaves an order of a customer who left, which the
/// shop allows anyway (an order keeps the customer it has).
struct OrderSteps: Sendable {
    let store: EventStore

    /// Where the steps keep their state, each key in its step's slot.
    enum Keys {
        static var reservations: String { "\(EntityType.inventory.tag)_reservations" }
        static var open: String { "\(EntityType.inventory.tag)_reservations_open" }
        static func decision(_ rid: String) -> String { "\(EntityType.order.tag)_decision:\(rid)" }
        /// A keyed create's reservation, ended: so that a retry of the create does not reserve
        /// its units again (its orders are made, or aborted and made anew under other ids).
        static func ended(_ rid: String) -> String { "\(EntityType.inventory.tag)_reservation_ended:\(rid)" }

        /// The keys of ``OrderScripts/inventoryPrelude``.
        static var inventory: [RedisArgument] {
            let i = EntityType.inventory.keys
            return [i.entities, i.versions, i.unique, EntityType.inventory.stream(.updated), reservations, open].map { RedisArgument($0) }
        }
    }

    /// One reservation: what a change takes from the stock now and gives back once committed.
    struct Reservation: Sendable, Hashable {
        var rid: String
        var order: String
        var action: EventAction
        var eventID: String
        var trace: String
        var take: [String: Int]
        var give: [String: Int]
        /// A keyed create's: once ended, its rid is never reserved again (``Keys/ended(_:)``).
        var keep = false
    }

    enum Decision: String, Sendable { case committed, aborted }

    // MARK: The commands

    func create(_ orders: [Order], trace: String, key: EventStore.CreateKey?) async throws -> EventStore.Appended {
        let given = orders.map(\.id)
        var orders = orders
        var replacing = ""
        // Twice at most: a keyed create whose pending orders were aborted (its first attempt
        // stalled past the reaper's grace) starts again with new ids, once.
        for _ in 0..<2 {
            if let key {
                // Confirmed: a replayed answer is a 200 resting on the first attempt, and the ids
                // fixed here are what a retry reserves for (a chaos run answered 200 for an order
                // a failover then lost, when this read went unconfirmed).
                let reply = try await store.runConfirmed(
                    OrderScripts.claim, type: .order, keys: [RedisArgument(key.record(.order))],
                    arguments: [
                        RedisArgument(key.digest), RedisArgument(EventStore.CreateKey.ttl.components.seconds * 1000), RedisArgument(replacing),
                        RedisArgument(orders.map(\.id).joined(separator: ",")),
                    ],
                    // A record of an earlier attempt (its orders made, or their ids fixed and some
                    // made): unconfirmed, that attempt may have been applied (``EventStore/run``).
                    wrote: { $0.array?.first?.string == "claimed" }, answersEarlierWrite: { ["replayed", "pending"].contains($0.array?.first?.string) })
                let parts = reply.array?.map { $0.string ?? "" } ?? []
                switch parts.first {
                case "claimed": break
                case "pending":
                    let ids = Array(parts.dropFirst())
                    guard ids.count == orders.count else { throw RedisError(.unexpectedReply, "idempotency record holds \(ids.count) ids for \(orders.count) orders") }
                    orders = zip(orders, ids).map { Order(id: $1, productIDs: $0.productIDs, customerID: $0.customerID) }
                default:
                    return try EventStore.appended(reply, type: .order)
                }
            }
            try await store.requireLive(.customer, Set(orders.map(\.customerID)), refusal: "customer", of: .order)
            let reservations = orders.map {
                Reservation(
                    rid: $0.id, order: $0.id, action: .created, eventID: RandomUUID.string(), trace: trace, take: $0.units, give: [:],
                    keep: key != nil)
            }
            try await store.requireLive(.product, Set(reservations.flatMap { $0.take.keys }), refusal: "product", of: .order)
            try await prepare(reservations)
            var argv: [RedisArgument] = [RedisArgument(EventStore.now()), RedisArgument(trace), RedisArgument(orders.count)]
            for (o, r) in zip(orders, reservations) { argv += [RedisArgument(o.id), RedisArgument(r.eventID), RedisArgument(bytes: o.json)] }
            argv += EventStore.CreateKey.arguments(key)
            let keys = createKeys(orders, key: key)
            let reply = try await secondStep { try await store.run("create orders", OrderScripts.createOrders, type: .order, keys: keys, arguments: argv) }
            let tag = reply.array?.first?.string
            if tag == "aborted" && key != nil {
                await end(reservations.map(\.rid), .aborted)
                replacing = orders.map(\.id).joined(separator: ",")
                orders = orders.map { Order(id: RandomUUID.string(), productIDs: $0.productIDs, customerID: $0.customerID) }
                continue
            }
            // Made now: committed. Refused, or made by another request with the key (replayed):
            // each reservation ends by its own decision, read (or made 'aborted') in the orders'
            // slot: the replayed ids may not be these.
            await end(reservations.map(\.rid), tag == "ok" ? .committed : nil)
            if tag == "aborted" { throw ShopError.stepAborted }
            var appended = try EventStore.appended(reply, type: .order)
            if appended.replayedIDs == nil && orders.map(\.id) != given { appended.madeIDs = orders.map(\.id) }
            return appended
        }
        throw ShopError.stepAborted
    }

    func update(_ order: Order, trace: String) async throws -> EventStore.Appended {
        // A concurrent change of the same order moves its version between the read and step 2:
        // read again and retry, a few times.
        for _ in 0..<5 {
            guard let (current, version) = try await state(order.id) else { throw ShopError.notFound(.order, order.id) }
            if order.customerID != current.customerID { try await store.requireLive(.customer, [order.customerID], refusal: "customer", of: .order) }
            var delta = order.units
            for (pid, u) in current.units { delta[pid, default: 0] -= u }
            let take = delta.filter { $0.value > 0 }
            try await store.requireLive(.product, Set(take.keys), refusal: "product", of: .order)
            let reservation = Reservation(
                rid: RandomUUID.string(), order: order.id, action: .updated, eventID: RandomUUID.string(), trace: trace,
                take: take, give: delta.filter { $0.value < 0 }.mapValues { -$0 })
            try await prepare([reservation])
            let keys = [
                EntityType.order.keys.entities, EntityType.order.keys.versions, EntityType.order.stream(.updated), Keys.decision(reservation.rid),
            ].map { RedisArgument($0) }
            let argv: [RedisArgument] = [
                RedisArgument(order.id), RedisArgument(reservation.eventID), RedisArgument(bytes: order.json), RedisArgument(EventStore.now()),
                RedisArgument(trace), RedisArgument(version),
            ]
            let reply = try await secondStep { try await store.run("update order", OrderScripts.updateOrder, type: .order, keys: keys, arguments: argv) }
            if let result = try await decided(reply, reservation, id: order.id) { return result }
        }
        throw ShopError.conflict("order \(order.id) changed concurrently while this change was made; send it again", field: "id")
    }

    func delete(id: String, trace: String) async throws -> EventStore.Appended {
        for _ in 0..<5 {
            guard let (current, version) = try await state(id) else { throw ShopError.notFound(.order, id) }
            let reservation = Reservation(
                rid: RandomUUID.string(), order: id, action: .deleted, eventID: RandomUUID.string(), trace: trace,
                take: [:], give: current.units)
            try await prepare([reservation])
            let o = EntityType.order.keys
            let keys = [o.entities, o.versions, o.ids, o.tombstones, EntityType.order.stream(.deleted), Keys.decision(reservation.rid)]
                .map { RedisArgument($0) }
            let argv: [RedisArgument] = [
                RedisArgument(id), RedisArgument(reservation.eventID), RedisArgument(EventStore.now()), RedisArgument(trace), RedisArgument(version),
            ]
            let reply = try await secondStep { try await store.run("delete order", OrderScripts.deleteOrder, type: .order, keys: keys, arguments: argv) }
            if let result = try await decided(reply, reservation, id: id) { return result }
        }
        throw ShopError.conflict("order \(id) changed concurrently while it was deleted; send it again", field: "id")
    }

    // MARK: The steps

    /// Step 2, whose refusal by a full Redis (OOM: it wrote nothing) comes after step 1 made a
    /// reservation: ``ShopError/orderChangeRefusedFull``, not the "did not run" of other commands.
    private func secondStep(_ body: () async throws -> RESPValue) async throws -> RESPValue {
        do {
            return try await body()
        } catch let error as RedisError where error.code == .outOfMemory {
            throw ShopError.orderChangeRefusedFull
        }
    }

    /// Step 1. Throws the stock's refusal (409) when the units are not there.
    func prepare(_ reservations: [Reservation]) async throws {
        var argv: [RedisArgument] = [RedisArgument(EventStore.now()), RedisArgument(reservations.count)]
        for r in reservations {
            argv += [
                RedisArgument(r.rid), RedisArgument(r.order), RedisArgument(r.action.rawValue), RedisArgument(r.eventID), RedisArgument(r.trace),
                RedisArgument(r.keep ? "1" : "0"),
            ]
            for units in [r.take, r.give] {
                argv.append(RedisArgument(units.count))
                for (pid, u) in units.sorted(by: { $0.key < $1.key }) { argv += [RedisArgument(pid), RedisArgument(u)] }
            }
        }
        let script = store.orderPlantedBug == .oversells ? OrderScripts.preparePlantedOversells : OrderScripts.prepare
        let reply: RESPValue
        do {
            reply = try await store.run(
                "reserve stock", script, type: .inventory, keys: Keys.inventory + reservations.map { RedisArgument(Keys.ended($0.rid)) },
                arguments: argv)
        } catch let uncertain as ShopError where uncertain.outcome == "may have been applied" && !reservations.contains(where: \.keep) {
            // Only the reservation may hold (unconfirmed, or its answer lost): the order change
            // is step 2, which this request never runs. Trial I: 503 "may have been applied" for
            // orders that were never written, whose units the reaper returned 10 s later.
            // Not for a keyed create: another request with its key reserves for the same orders
            // and may make them (a review), so "may have been applied" holds, and a retry with
            // the key answers which.
            throw ShopError.reservationUncertain(uncertain)
        }
        _ = try EventStore.appended(reply, type: .order)
        if store.orderStepPause > .zero { try await Task.sleep(for: store.orderStepPause) }
    }

    /// Step 2 for reservations whose change will not be made: their decisions, `aborted` where
    /// none was made.
    func abort(_ rids: [String]) async throws -> [Decision] {
        let reply = try await store.runConfirmed(OrderScripts.abort, type: .order, keys: rids.map { RedisArgument(Keys.decision($0)) }, arguments: [])
        return try (reply.array ?? []).map {
            guard let d = $0.string.flatMap(Decision.init(rawValue:)) else { throw RedisError(.unexpectedReply, "decision \($0)") }
            return d
        }
    }

    /// Step 3, then the decisions' cleanup. Answers how many reservations it ended (those ended
    /// already are skipped).
    @discardableResult
    func finish(_ rids: [String], _ decisions: [Decision], plantedForgetsAborts: Bool = false) async throws -> Int {
        var argv: [RedisArgument] = [RedisArgument(EventStore.now()), RedisArgument(rids.count)]
        for (rid, d) in zip(rids, decisions) { argv += [RedisArgument(rid), RedisArgument(d.rawValue)] }
        argv += [RedisArgument(""), RedisArgument("")]
        // Confirmed (with `--confirm-replicas`) before the decisions go: on a cluster the two
        // slots fail over apart, and a lost finish whose decision survived no longer would come
        // back as an open reservation that the reaper would abort, returning a made order's units.
        let reply = try await store.runConfirmed(
            OrderScripts.finish, type: .inventory, keys: Keys.inventory + rids.map { RedisArgument(Keys.ended($0)) }, arguments: argv)
        let ended = reply.array.flatMap { $0.count > 1 ? $0[1].int : nil } ?? 0
        // A committed decision is needed only while its reservation may be open; an aborted one
        // stays (for its TTL): the step 2 of a process that stalled past the grace time may
        // still come, and must find it.
        let committed = zip(rids, decisions).filter { $0.1 == .committed || plantedForgetsAborts }.map { RedisArgument(Keys.decision($0.0)) }
        if !committed.isEmpty { _ = try await store.pool.send(DEL(keys: committed)) }
        return ended
    }

    /// The reservations open for longer than `grace`, at most `limit`.
    func due(grace: Duration, limit: Int) async throws -> [String] {
        let reply = try await store.pool.evaluate(
            OrderScripts.due, keys: [RedisArgument(Keys.open)],
            arguments: [RedisArgument(Int(grace.components.seconds * 1000 + grace.components.attoseconds / 1_000_000_000_000_000)), RedisArgument(limit)])
        return reply.array?.compactMap(\.string) ?? []
    }

    // MARK: Helpers

    /// Ends the command's own reservations after step 2: by `decision`, or with none given by
    /// the decisions in the orders' slot (made 'aborted' where there is none, so that nothing
    /// commits later). When this fails (Redis went away), they stay open and the reaper ends
    /// them by the same decisions: the command's answer stands.
    private func end(_ rids: [String], _ decision: Decision?) async {
        if let decision {
            _ = try? await finish(rids, rids.map { _ in decision })
        } else if let decisions = try? await abort(rids) {
            _ = try? await finish(rids, decisions)
        }
    }

    /// The answer of an update's or deletion's step 2: the result, nil to retry (the version
    /// moved), or the refusal thrown.
    private func decided(_ reply: RESPValue, _ r: Reservation, id: String) async throws -> EventStore.Appended? {
        // An update's or deletion's rid is its own: a refused step 2 (changed, not found) will
        // never run again for it, so it ends aborted without a decision to keep.
        switch reply.array?.first?.string {
        case "ok":
            await end([r.rid], .committed)
            return try EventStore.appended(reply, type: .order, id: id)
        case "changed":
            await end([r.rid], .aborted)
            return nil
        case "aborted":
            await end([r.rid], .aborted)
            throw ShopError.stepAborted
        default:
            await end([r.rid], .aborted)
            return try EventStore.appended(reply, type: .order, id: id)
        }
    }

    private func createKeys(_ orders: [Order], key: EventStore.CreateKey?) -> [RedisArgument] {
        let o = EntityType.order.keys
        return ([o.entities, o.versions, o.ids, o.sequence, EntityType.order.stream(.created)] + orders.map { Keys.decision($0.id) }
            + [store.idempotencyRecord(.order, key)]).map { RedisArgument($0) }
    }

    /// A live order and its version. None (a 404): with `--confirm-replicas`, only once the
    /// replicas have that state, as the scripts' refusals.
    private func state(_ id: String) async throws -> (Order, String)? {
        let keys = [RedisArgument(EntityType.order.keys.entities), RedisArgument(EntityType.order.keys.versions)]
        var reply = try await store.pool.evaluate(OrderScripts.state, keys: keys, arguments: [RedisArgument(id)])
        if reply.array == nil, store.confirmation != nil {
            reply = try await store.runConfirmed(OrderScripts.state, type: .order, keys: keys, arguments: [RedisArgument(id)], wrote: { _ in false })
        }
        guard let parts = reply.array, parts.count == 2, let json = parts[0].string, let version = parts[1].string else { return nil }
        let value = try JSONValue.parse(Array(json.utf8))
        guard let order = try? Order(fields: FieldReader(value), id: id, current: nil) else {
            throw RedisError(.unexpectedReply, "order \(id) in the read model is not an order: \(LogText.escaped(json, limit: 200))")
        }
        return (order, version)
    }
}
