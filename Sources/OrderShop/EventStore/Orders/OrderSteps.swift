import Foundation
import RedisClient

/// Deliberate defects of the order changes, for chaos runs (`ordershop serve order --planted-bug ...`).
public enum OrderChangePlantedBug: String, Sendable, CaseIterable {
    /// Step 1 takes the units without checking the stock (its `amount < d` refusal gone): orders
    /// for the last units all succeed, and the stock goes below zero.
    case oversells = "order-oversells"
}

/// An order change (create, update, delete) in steps that each touch one slot, so that it runs
/// on a Redis Cluster where orders and stock records live on different nodes:
///
/// 1. **prepare** (stock): a reservation, keyed by its rid, takes the units the change adds,
///    checked against the stock: nothing is ever sold twice. It records the units the change
///    gives back, and is listed as open. In a shop in partitions (``ShopLayout``) a product's
///    stock record lives in its product's partition, so a reservation has a part in each stock
///    partition its products are in, prepared one after another (each all or none); when one
///    is refused (out of stock), the parts made before it are ended as aborted at once.
/// 2. **decide** (the order's partition): the order change itself, with its event, writes the
///    decision `committed` for the rid; unless the decision is `aborted` already, or (update,
///    delete) the order's version is not the one the reservation was made for.
/// 3. **finish** (stock, each part): committed, the units given back are returned; aborted, the
///    units taken are returned. The part is no longer open. Once every part is finished, a
///    committed decision is deleted; an aborted one is kept for a day
///    (``OrderScripts/decisionTTLms``), so that the step 2 of a process that stalled that long
///    is still refused.
///
/// A process that dies between the steps leaves open parts: the ``ReservationReaper`` finds one
/// once it is older than its grace time, makes its decision `aborted` unless it was committed
/// (step 2 is one atomic write either way, so the late command and the reaper cannot both win),
/// and finishes every part of it (each part records where the others are), so that a committed
/// decision is deleted only when no part of its reservation is open. So an order change is
/// never left half-made: its order without its stock taken, or stock taken for no order.
///
/// The rid of a create is the order's id (a retry with the `Idempotency-Key` reserves for the
/// same orders, see ``OrderScripts/claim``); that of an update or a deletion is a random id in
/// its order's partition, so that its decision is in the order's slot.
///
/// What is not atomic any more: the customer and product checks are reads before step 1. A
/// customer deleted between them and step 2 leaves an order of a customer who left, which the
/// shop allows anyway (an order keeps the customer it has).
struct OrderSteps: Sendable {
    let store: EventStore
    var layout: ShopLayout { store.layout }

    /// One reservation: what a change takes from the stock now and gives back once committed.
    struct Reservation: Sendable, Hashable {
        var rid: String
        var order: String
        var action: EventAction
        var eventID: String
        var trace: String
        var take: [String: Int]
        var give: [String: Int]
        /// A keyed create's: once ended, its rid is never reserved again (``OrderStepKeys/ended(_:in:)``).
        var keep = false

        /// The stock partitions whose units it moves, in order (none when it moves none).
        func parts(in layout: ShopLayout) -> [Int] {
            Set((Array(take.keys) + Array(give.keys)).map { OrderSteps.stockPartition(ofProduct: $0, in: layout) }).sorted()
        }

        /// Its part in stock partition `partition`: the units of the products there.
        func part(_ partition: Int, in layout: ShopLayout) -> Reservation {
            var part = self
            part.take = take.filter { OrderSteps.stockPartition(ofProduct: $0.key, in: layout) == partition }
            part.give = give.filter { OrderSteps.stockPartition(ofProduct: $0.key, in: layout) == partition }
            return part
        }
    }

    /// A reservation by its rid and the stock partitions it has parts in: what step 3 and the
    /// reaper need.
    struct Reserved: Sendable, Hashable {
        var rid: String
        var parts: [Int]
    }

    /// The stock partition of a product's stock record: its product's partition (a stock
    /// record's id is drawn there, ``EventStore/placement(_:key:)``).
    static func stockPartition(ofProduct id: String, in layout: ShopLayout) -> Int {
        ShopLayout.partition(ofID: id, among: layout.partitions(of: .inventory))
    }

    enum Decision: String, Sendable { case committed, aborted }

    // MARK: The commands

    func create(_ orders: [Order], trace: String, key: EventStore.CreateKey?) async throws -> EventStore.Appended {
        let given = orders.map(\.id)
        // All in one order partition (one step 2, all or none): the key's, or any.
        let partition = try store.placement(orders, key: key)
        var orders = partition.count == 1 ? orders : renamed(orders, in: partition)
        var replacing = ""
        // Twice at most: a keyed create whose pending orders were aborted (its first attempt
        // stalled past the reaper's grace) starts again with new ids, once.
        for _ in 0..<2 {
            if let key {
                // Confirmed: a replayed answer is a 200 resting on the first attempt, and the ids
                // fixed here are what a retry reserves for (a chaos run answered 200 for an order
                // a failover then lost, when this read went unconfirmed).
                let reply = try await store.runConfirmed(
                    OrderScripts.claim, in: partition, keys: [RedisArgument(key.record(in: partition))],
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
            // Drawn before step 1: a counter that cannot be reached fails the create before any
            // stock is reserved (a number drawn for nothing is a gap, as for a refused create).
            let first = try await CreationSequence.draw(orders.count, of: .order, in: partition, pool: store.pool)
            try await prepare(reservations)
            var argv: [RedisArgument] = [
                RedisArgument(EventStore.now()), RedisArgument(trace), RedisArgument(orders.count), RedisArgument(first.map { "\($0)" } ?? ""),
            ]
            for (o, r) in zip(orders, reservations) { argv += [RedisArgument(o.id), RedisArgument(r.eventID), RedisArgument(bytes: o.json)] }
            argv += EventStore.CreateKey.arguments(key)
            let keys = createKeys(orders, in: partition, key: key)
            let reply = try await secondStep {
                try await store.run("create orders", OrderScripts.createOrders, in: partition, keys: keys, arguments: argv)
            }
            let tag = reply.array?.first?.string
            let ends = reservations.map { reserved($0) }
            if tag == "aborted" && key != nil {
                await end(ends, .aborted)
                replacing = orders.map(\.id).joined(separator: ",")
                orders = renamed(orders, in: partition)
                continue
            }
            // Made now: committed. Refused, or made by another request with the key (replayed):
            // each reservation ends by its own decision, read (or made 'aborted') in the orders'
            // slot: the replayed ids may not be these.
            await end(ends, tag == "ok" ? .committed : nil)
            if tag == "aborted" { throw ShopError.stepAborted }
            var appended = try EventStore.appended(reply, type: .order)
            if appended.replayedIDs == nil && orders.map(\.id) != given { appended.madeIDs = orders.map(\.id) }
            return appended
        }
        throw ShopError.stepAborted
    }

    /// The orders with new random ids in `partition`.
    private func renamed(_ orders: [Order], in partition: EntityPartition) -> [Order] {
        orders.map { Order(id: layout.newID(of: .order, inPartition: partition.partition), productIDs: $0.productIDs, customerID: $0.customerID) }
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
            let partition = layout.partition(.order, id: order.id)
            let reservation = Reservation(
                rid: layout.newID(of: .order, inPartition: partition.partition), order: order.id, action: .updated, eventID: RandomUUID.string(),
                trace: trace, take: take, give: delta.filter { $0.value < 0 }.mapValues { -$0 })
            try await prepare([reservation])
            let keys = [partition.keys.entities, partition.keys.versions, partition.stream(.updated), OrderStepKeys.decision(reservation.rid, in: layout)]
                .map { RedisArgument($0) }
            let argv: [RedisArgument] = [
                RedisArgument(order.id), RedisArgument(reservation.eventID), RedisArgument(bytes: order.json), RedisArgument(EventStore.now()),
                RedisArgument(trace), RedisArgument(version),
            ]
            let reply = try await secondStep {
                try await store.run("update order", OrderScripts.updateOrder, in: partition, keys: keys, arguments: argv)
            }
            if let result = try await decided(reply, reservation, id: order.id) { return result }
        }
        throw ShopError.conflict("order \(order.id) changed concurrently while this change was made; send it again", field: "id")
    }

    func delete(id: String, trace: String) async throws -> EventStore.Appended {
        for _ in 0..<5 {
            guard let (current, version) = try await state(id) else { throw ShopError.notFound(.order, id) }
            let partition = layout.partition(.order, id: id)
            let reservation = Reservation(
                rid: layout.newID(of: .order, inPartition: partition.partition), order: id, action: .deleted, eventID: RandomUUID.string(),
                trace: trace, take: [:], give: current.units)
            try await prepare([reservation])
            let o = partition.keys
            let keys = [o.entities, o.versions, o.ids, o.tombstones, partition.stream(.deleted), OrderStepKeys.decision(reservation.rid, in: layout)]
                .map { RedisArgument($0) }
            let argv: [RedisArgument] = [
                RedisArgument(id), RedisArgument(reservation.eventID), RedisArgument(EventStore.now()), RedisArgument(trace), RedisArgument(version),
            ]
            let reply = try await secondStep {
                try await store.run("delete order", OrderScripts.deleteOrder, in: partition, keys: keys, arguments: argv)
            }
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

    /// Step 1, in each stock partition the reservations move units in. Throws the stock's
    /// refusal (409) when the units are not there. When a partition fails after others took
    /// their parts, those parts are ended as aborted before the error is thrown (else the reaper
    /// does, after its grace time): at once, as this request's step 2 never comes; a keyed
    /// create's by an aborted decision first, since another request with its key may run step 2
    /// for the same rids (it then makes its orders anew under other ids).
    func prepare(_ reservations: [Reservation]) async throws {
        let all = reservations.map { reserved($0) }
        for (i, p) in Set(all.flatMap(\.parts)).sorted().enumerated() {
            do {
                let here = reservations.indices.filter { all[$0].parts.contains(p) }
                try await preparePart(here.map { reservations[$0].part(p, in: layout) }, of: here.map { all[$0].parts }, in: p)
            } catch {
                if i > 0 { await end(all, reservations.contains(where: \.keep) ? nil : .aborted) }
                throw error
            }
        }
        if store.orderStepPause > .zero { try await Task.sleep(for: store.orderStepPause) }
    }

    /// Step 1 in stock partition `p`: the reservations' parts there, each recorded with every
    /// stock partition its reservation has a part in (`all`), where the reaper ends them all.
    private func preparePart(_ parts: [Reservation], of all: [[Int]], in p: Int) async throws {
        let partition = layout.partition(.inventory, p)
        var argv: [RedisArgument] = [RedisArgument(EventStore.now()), RedisArgument(parts.count)]
        for (r, partitions) in zip(parts, all) {
            argv += [
                RedisArgument(r.rid), RedisArgument(r.order), RedisArgument(r.action.rawValue), RedisArgument(r.eventID), RedisArgument(r.trace),
                RedisArgument(r.keep ? "1" : "0"), RedisArgument(partitions.map(String.init).joined(separator: ",")),
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
                "reserve stock", script, in: partition, keys: OrderStepKeys.inventory(in: partition) + parts.map { RedisArgument(OrderStepKeys.ended($0.rid, in: partition)) },
                arguments: argv)
        } catch let uncertain as ShopError where uncertain.outcome == "may have been applied" && !parts.contains(where: \.keep) {
            // Only the reservation may hold (unconfirmed, or its answer lost): the order change
            // is step 2, which this request never runs. Trial I: 503 "may have been applied" for
            // orders that were never written, whose units the reaper returned 10 s later.
            // Not for a keyed create: another request with its key reserves for the same orders
            // and may make them (a review), so "may have been applied" holds, and a retry with
            // the key answers which.
            throw ShopError.reservationUncertain(uncertain)
        }
        _ = try EventStore.appended(reply, type: .order)
    }

    /// Step 2 for reservations whose change will not be made: their decisions, `aborted` where
    /// none was made (`byReaper`: counted in ``OrderStepKeys/reaperAborts(in:)``). Each order
    /// partition's rids in one script.
    func abort(_ rids: [String], byReaper: Bool = false) async throws -> [Decision] {
        var decisions = [Decision?](repeating: nil, count: rids.count)
        let byPartition = Dictionary(grouping: rids.indices) { layout.partition(of: .order, id: rids[$0]) }
        for (p, indices) in byPartition.sorted(by: { $0.key < $1.key }) {
            let partition = layout.partition(.order, p)
            let reply = try await store.runConfirmed(
                OrderScripts.abort, in: partition,
                keys: indices.map { RedisArgument(OrderStepKeys.decision(rids[$0], in: layout)) } + [RedisArgument(OrderStepKeys.reaperAborts(in: partition))],
                arguments: [RedisArgument(byReaper ? "1" : "0")])
            let answers = reply.array ?? []
            guard answers.count == indices.count else { throw RedisError(.unexpectedReply, "abort answered \(answers.count) decisions for \(indices.count)") }
            for (index, answer) in zip(indices, answers) {
                guard let d = answer.string.flatMap(Decision.init(rawValue:)) else { throw RedisError(.unexpectedReply, "decision \(answer)") }
                decisions[index] = d
            }
        }
        return decisions.compactMap { $0 }
    }

    /// Step 3 in every part of each reservation, then the decisions' cleanup. Answers how many
    /// reservations it ended a part of (parts ended already are skipped).
    @discardableResult
    func finish(_ reservations: [Reserved], _ decisions: [Decision], plantedForgetsAborts: Bool = false) async throws -> Int {
        var ended: Set<String> = []
        for p in Set(reservations.flatMap(\.parts)).sorted() {
            let here = zip(reservations, decisions).filter { $0.0.parts.contains(p) }
            let partition = layout.partition(.inventory, p)
            var argv: [RedisArgument] = [RedisArgument(EventStore.now()), RedisArgument(here.count)]
            for (r, d) in here { argv += [RedisArgument(r.rid), RedisArgument(d.rawValue)] }
            argv += [RedisArgument(""), RedisArgument("")]
            // Confirmed (with `--confirm-replicas`) before the decisions go: on a cluster the two
            // slots fail over apart, and a lost finish whose decision survived no longer would
            // come back as an open reservation that the reaper would abort, returning a made
            // order's units.
            let reply = try await store.runConfirmed(
                OrderScripts.finish, in: partition, keys: OrderStepKeys.inventory(in: partition) + here.map { RedisArgument(OrderStepKeys.ended($0.0.rid, in: partition)) },
                arguments: argv)
            ended.formUnion((reply.array ?? []).dropFirst(2).compactMap(\.string))
        }
        // A committed decision is needed only while a part of its reservation may be open (all
        // are finished now); an aborted one stays (for its TTL): the step 2 of a process that
        // stalled past the grace time may still come, and must find it.
        let committed = zip(reservations, decisions).filter { $0.1 == .committed || plantedForgetsAborts }.map(\.0.rid)
        for (_, rids) in Dictionary(grouping: committed, by: { layout.partition(of: .order, id: $0) }) {
            _ = try await store.pool.send(DEL(keys: rids.map { RedisArgument(OrderStepKeys.decision($0, in: layout)) }))
        }
        return ended.count
    }

    /// The reservations with a part open in stock partition `p` for longer than `grace`, at most `limit`.
    func due(in p: Int, grace: Duration, limit: Int) async throws -> [Reserved] {
        let partition = layout.partition(.inventory, p)
        let reply = try await store.pool.evaluate(
            OrderScripts.due, keys: [RedisArgument(OrderStepKeys.open(in: partition)), RedisArgument(OrderStepKeys.reservations(in: partition))],
            arguments: [RedisArgument(Int(grace.components.seconds * 1000 + grace.components.attoseconds / 1_000_000_000_000_000)), RedisArgument(limit)])
        let items = reply.array ?? []
        return stride(from: 0, to: items.count - 1, by: 2).compactMap { i in
            guard let rid = items[i].string else { return nil }
            // A record without its parts (gone, or made before parts were recorded): this one.
            let parts = (items[i + 1].string ?? "").split(separator: ",").compactMap { Int($0) }.filter { (0..<partition.count).contains($0) }
            return Reserved(rid: rid, parts: parts.contains(p) ? parts : [p])
        }
    }

    // MARK: Helpers

    /// A reservation by its rid and parts.
    func reserved(_ r: Reservation) -> Reserved { Reserved(rid: r.rid, parts: r.parts(in: layout)) }

    /// Ends the command's own reservations after step 2: by `decision`, or with none given by
    /// the decisions in the orders' slot (made 'aborted' where there is none, so that nothing
    /// commits later). When this fails (Redis went away), they stay open and the reaper ends
    /// them by the same decisions: the command's answer stands.
    private func end(_ reservations: [Reserved], _ decision: Decision?) async {
        if let decision {
            _ = try? await finish(reservations, reservations.map { _ in decision })
        } else if let decisions = try? await abort(reservations.map(\.rid)) {
            _ = try? await finish(reservations, decisions)
        }
    }

    /// The answer of an update's or deletion's step 2: the result, nil to retry (the version
    /// moved), or the refusal thrown.
    private func decided(_ reply: RESPValue, _ r: Reservation, id: String) async throws -> EventStore.Appended? {
        // An update's or deletion's rid is its own: a refused step 2 (changed, not found) will
        // never run again for it, so it ends aborted without a decision to keep.
        let mine = [reserved(r)]
        switch reply.array?.first?.string {
        case "ok":
            await end(mine, .committed)
            return try EventStore.appended(reply, type: .order, id: id)
        case "changed":
            await end(mine, .aborted)
            return nil
        case "aborted":
            await end(mine, .aborted)
            throw ShopError.stepAborted
        default:
            await end(mine, .aborted)
            return try EventStore.appended(reply, type: .order, id: id)
        }
    }

    private func createKeys(_ orders: [Order], in partition: EntityPartition, key: EventStore.CreateKey?) -> [RedisArgument] {
        let o = partition.keys
        return ([o.entities, o.versions, o.ids, o.sequence, partition.stream(.created)] + orders.map { OrderStepKeys.decision($0.id, in: layout) }
            + [store.idempotencyRecord(partition, key)]).map { RedisArgument($0) }
    }

    /// A live order and its version. None (a 404): with `--confirm-replicas`, only once the
    /// replicas have that state, as the scripts' refusals.
    private func state(_ id: String) async throws -> (Order, String)? {
        let partition = layout.partition(.order, id: id)
        let keys = [RedisArgument(partition.keys.entities), RedisArgument(partition.keys.versions)]
        var reply = try await store.pool.evaluate(OrderScripts.state, keys: keys, arguments: [RedisArgument(id)])
        if reply.array == nil, store.confirmation != nil {
            reply = try await store.runConfirmed(OrderScripts.state, in: partition, keys: keys, arguments: [RedisArgument(id)], wrote: { _ in false })
        }
        guard let parts = reply.array, parts.count == 2, let json = parts[0].string, let version = parts[1].string else { return nil }
        let value = try JSONValue.parse(Array(json.utf8))
        guard let order = try? Order(fields: FieldReader(value), id: id, current: nil) else {
            throw RedisError(.unexpectedReply, "order \(id) in the read model is not an order: \(LogText.escaped(json, limit: 200))")
        }
        return (order, version)
    }
}
