import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import OrderShop

/// What became of a command, as its client saw it.
public enum Outcome: String, Codable, Sendable {
    /// Answered 200.
    case ok
    /// Answered 4xx: refused, must have changed nothing.
    case failed
    /// Timed out, connection lost, or 5xx: it may or may not have taken effect.
    case unknown
}

/// One command the load sent, and what it got back. Its trace id (the `X-Trace-ID` header) ends
/// up in the `trace_id` field of every event the command appends, which is how the checker finds
/// the command's events, including those of commands whose outcome the client never learned.
public struct CommandRecord: Codable, Sendable {
    public var trace: String
    public var action: String  // created, updated, deleted
    public var type: String  // customer, product, inventory, order, billing
    /// The entity ids: those answered (create) or addressed (update, delete).
    public var ids: [String]
    public var status: Int?
    public var outcome: Outcome
    public var error: String?
    public var started: Double
    public var finished: Double
    /// A create sent with an `Idempotency-Key` (its trace, the same for every attempt): the
    /// number of entities its body makes. However often it is retried, the trace's events may
    /// make no more entities than this. nil: no key.
    public var keyedItems: Int? = nil
    /// A customer update's new address, whatever its outcome: a worker may read it from the
    /// read model before a failover loses the update (answered 503 "may have been applied"), and
    /// mail to it (``ImpliedMails``).
    public var email: String? = nil
}

/// What the load knows to exist (from commands answered 200), to pick sensible targets.
actor ShopModel {
    var customers: [String] = []
    var products: [String] = []
    /// Live orders and their products.
    var orders: [String: (customer: String, products: [String])] = [:]
    var orderList: [String] = []
    var billed: Set<String> = []

    func add(customers ids: [String]) { customers += ids }
    func add(products ids: [String]) { products += ids }
    func addOrder(_ id: String, customer: String, products: [String]) {
        orders[id] = (customer, products)
        orderList.append(id)
    }
    func removeCustomer(_ id: String) { customers.removeAll { $0 == id } }
    func removeProduct(_ id: String) { products.removeAll { $0 == id } }
    func removeOrder(_ id: String) {
        orders[id] = nil
        orderList.removeAll { $0 == id }
    }
    func updateOrder(_ id: String, products: [String]) { orders[id]?.products = products }
    func markBilled(_ id: String) { billed.insert(id) }

    func pickCustomer(_ r: UInt64) -> String? { customers.isEmpty ? nil : customers[Int(r % UInt64(customers.count))] }
    func pickProducts(_ r: UInt64, count: Int) -> [String] {
        guard !products.isEmpty else { return [] }
        var rng = SplitMix64(seed: r)
        return (0..<count).map { _ in products[rng.below(products.count)] }
    }
    func pickOrder(_ r: UInt64, unbilled: Bool) -> (id: String, customer: String, products: [String])? {
        let candidates = unbilled ? orderList.filter { !billed.contains($0) } : orderList
        guard !candidates.isEmpty else { return nil }
        let id = candidates[Int(r % UInt64(candidates.count))]
        guard let o = orders[id] else { return nil }
        return (id, o.customer, o.products)
    }
    var counts: (customers: Int, products: Int) { (customers.count, products.count) }
}

/// Concurrent HTTP clients sending commands through the gateway for the whole run.
public final class LoadGenerator: Sendable {
    let gateway: String
    let http: HTTPClient
    let timeout: TimeAmount
    let model = ShopModel()
    let log = RecordLog()
    let clock: RunClock

    init(gateway: String, http: HTTPClient, requestTimeout: Double, clock: RunClock) {
        self.gateway = gateway
        self.http = http
        self.timeout = .milliseconds(Int64(requestTimeout * 1000))
        self.clock = clock
    }

    /// Customers and products with stock, before the faults start.
    func seed(rng: inout SplitMix64) async {
        for _ in 0..<4 { await createCustomers(rng: &rng) }
        for _ in 0..<4 { await createProducts(rng: &rng) }
    }

    /// Runs `clients` loops until `deadline`.
    func run(clients: Int, seed: UInt64, until deadline: ContinuousClock.Instant) async {
        await withTaskGroup(of: Void.self) { group in
            for c in 0..<clients {
                group.addTask {
                    var rng = SplitMix64(seed: seed &+ 0x1000 &+ UInt64(c))
                    while ContinuousClock.now < deadline {
                        await self.step(rng: &rng)
                        do { try await Task.sleep(for: .milliseconds(20 + rng.below(60))) } catch { return }
                    }
                }
            }
        }
    }

    private func step(rng: inout SplitMix64) async {
        let roll = rng.below(100)
        switch roll {
        case 0..<16: await createCustomers(rng: &rng)
        case 16..<22: await createProducts(rng: &rng)
        case 22..<52: await createOrder(rng: &rng)
        case 52..<64: await createBilling(rng: &rng)
        case 64..<71: await updateCustomer(rng: &rng)
        case 71..<76: await updateProduct(rng: &rng)
        case 76..<83: await updateOrder(rng: &rng)
        case 83..<90: await deleteOrder(rng: &rng)
        case 90..<96: await deleteCustomer(rng: &rng)
        default:
            if rng.below(3) == 0 { await deleteProduct(rng: &rng) } else { await createCustomers(rng: &rng) }
        }
    }

    // MARK: Commands

    private func createCustomers(rng: inout SplitMix64) async {
        let n = 1 + rng.below(4)
        let body: JSONValue = .array((0..<n).map { _ -> JSONValue in
            let tag = String(rng.next() % 1_000_000_000, radix: 36)
            return ["name": .string("Customer \(tag)"), "email": .string("c\(tag)@example.org")]
        })
        let r = await keyedCreate("/customers", body: body, type: "customer", items: n, rng: &rng)
        if r.outcome == .ok { await model.add(customers: r.ids) }
    }

    private func createProducts(rng: inout SplitMix64) async {
        let n = 1 + rng.below(2)
        let body: JSONValue = .array((0..<n).map { _ -> JSONValue in
            let tag = String(rng.next() % 1_000_000, radix: 36)
            return ["name": .string("Product \(tag)"), "price": .number(Double(1 + rng.below(9999)) / 100)]
        })
        let r = await keyedCreate("/products", body: body, type: "product", items: n, rng: &rng)
        guard r.outcome == .ok else { return }
        var stocked: [String] = []
        for id in r.ids {
            // One product in four is scarce (1-3 units), so that orders run out of its stock
            // and clients race for its last units: with 30-150 units each, no run ever met an
            // "out of stock" (a review), and a service that oversold would have passed.
            let amount = rng.below(4) == 0 ? 1 + rng.below(3) : 30 + rng.below(120)
            let inv = await keyedCreate(
                "/inventory", body: ["product_id": .string(id), "amount": .number(Double(amount))], type: "inventory", items: 1, rng: &rng)
            if inv.outcome == .ok { stocked.append(id) }
        }
        await model.add(products: stocked)
    }

    private func createOrder(rng: inout SplitMix64) async {
        guard let customer = await model.pickCustomer(rng.next()) else { return }
        let products = await model.pickProducts(rng.next(), count: 1 + rng.below(3))
        guard !products.isEmpty else { return }
        let r = await keyedCreate(
            "/order", body: ["customer_id": .string(customer), "product_ids": .array(products.map { .string($0) })], type: "order", items: 1, rng: &rng)
        if r.outcome == .ok, let id = r.ids.first { await model.addOrder(id, customer: customer, products: products) }
    }

    private func createBilling(rng: inout SplitMix64) async {
        guard let order = await model.pickOrder(rng.next(), unbilled: true) else { return }
        let r = await keyedCreate("/billing", body: ["order_id": .string(order.id)], type: "billing", items: 1, rng: &rng)
        if r.outcome == .ok || r.status == 409 { await model.markBilled(order.id) }
    }

    private func updateCustomer(rng: inout SplitMix64) async {
        guard let id = await model.pickCustomer(rng.next()) else { return }
        let tag = String(rng.next() % 1_000_000_000, radix: 36)
        let email = "r\(tag)@example.org"
        _ = await send(
            .PUT, "/customer/\(id)", body: ["id": .string(id), "name": .string("Renamed \(tag)"), "email": .string(email)],
            action: "updated", type: "customer", ids: [id], email: email)
    }

    private func updateProduct(rng: inout SplitMix64) async {
        guard let id = await model.pickProducts(rng.next(), count: 1).first else { return }
        let tag = String(rng.next() % 1_000_000, radix: 36)
        _ = await send(
            .PUT, "/product/\(id)", body: ["id": .string(id), "name": .string("Product \(tag)"), "price": .number(Double(1 + rng.below(9999)) / 100)],
            action: "updated", type: "product", ids: [id])
    }

    private func updateOrder(rng: inout SplitMix64) async {
        guard let order = await model.pickOrder(rng.next(), unbilled: false) else { return }
        let products = await model.pickProducts(rng.next(), count: 1 + rng.below(3))
        guard !products.isEmpty else { return }
        let r = await send(
            .PUT, "/order/\(order.id)",
            body: ["id": .string(order.id), "customer_id": .string(order.customer), "product_ids": .array(products.map { .string($0) })],
            action: "updated", type: "order", ids: [order.id])
        if r.outcome == .ok { await model.updateOrder(order.id, products: products) }
    }

    private func deleteOrder(rng: inout SplitMix64) async {
        guard let order = await model.pickOrder(rng.next(), unbilled: false) else { return }
        let r = await send(.DELETE, "/order/\(order.id)", body: nil, action: "deleted", type: "order", ids: [order.id])
        if r.outcome == .ok || r.status == 404 { await model.removeOrder(order.id) }
    }

    private func deleteCustomer(rng: inout SplitMix64) async {
        guard await model.counts.customers > 8, let id = await model.pickCustomer(rng.next()) else { return }
        let r = await send(.DELETE, "/customer/\(id)", body: nil, action: "deleted", type: "customer", ids: [id])
        if r.outcome == .ok || r.status == 404 { await model.removeCustomer(id) }
    }

    private func deleteProduct(rng: inout SplitMix64) async {
        guard await model.counts.products > 6, let id = await model.pickProducts(rng.next(), count: 1).first else { return }
        let r = await send(.DELETE, "/product/\(id)", body: nil, action: "deleted", type: "product", ids: [id])
        if r.outcome == .ok || r.status == 404 { await model.removeProduct(id) }
    }

    /// Sends one command with a fresh trace id (or `trace`) and records it. With an
    /// `idempotencyKey`, the record says how many entities the body makes (`keyedItems`); with
    /// `dropAnswer`, a 2xx answer is recorded as a lost one (``LoadGenerator/droppedAnswer``).
    func send(
        _ method: HTTPMethod, _ path: String, body: JSONValue?, action: String, type: String, ids: [String], trace given: String? = nil,
        idempotencyKey: String? = nil, keyedItems: Int? = nil, dropAnswer: Bool = false, email: String? = nil
    ) async -> CommandRecord {
        let trace = given ?? Self.newTrace()
        var request = HTTPClientRequest(url: gateway + path)
        request.method = method
        request.headers.add(name: "X-Trace-ID", value: trace)
        if let idempotencyKey { request.headers.add(name: "Idempotency-Key", value: idempotencyKey) }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: JSONCoding.encode(body)))
        }
        let started = clock.elapsed
        var record = CommandRecord(
            trace: trace, action: action, type: type, ids: ids, status: nil, outcome: .unknown, error: nil, started: started, finished: started,
            keyedItems: keyedItems, email: email)
        do {
            let response = try await http.execute(request, timeout: timeout)
            let bytes = try await response.body.collect(upTo: 16 << 20)
            let code = Int(response.status.code)
            record.status = code
            switch code {
            case 200..<300:
                record.outcome = dropAnswer ? .unknown : .ok
                if dropAnswer { record.error = Self.droppedAnswer }
                if ids.isEmpty, let json = try? JSONCoding.decode(JSONValue.self, from: bytes.readableBytesView) {
                    record.ids = json.arrayValue?.compactMap(\.stringValue) ?? []
                }
            case 400..<500 where code != 408 && code != 429:
                record.outcome = .failed
                record.error = String(buffer: bytes).prefix(200).description
            case 503 where keyedItems == nil && String(buffer: bytes).contains(#""outcome":"not applied""#):
                // The service says the command changed nothing (a refusal its replicas did not
                // confirm in time, an order change the reaper aborted): held to it like a 4xx,
                // so that one that took effect is a violation. (Not for a keyed create: its
                // retries share the trace, and an earlier attempt may have made it.)
                record.outcome = .failed
                record.error = String(buffer: bytes).prefix(200).description
            default:
                record.outcome = .unknown
                record.error = String(buffer: bytes).prefix(200).description
            }
        } catch {
            record.outcome = .unknown
            record.error = "\(error)".prefix(200).description
        }
        record.finished = clock.elapsed
        await log.append(record)
        return record
    }
}

/// Every command sent, in the order they finished.
actor RecordLog {
    private(set) var records: [CommandRecord] = []
    func append(_ r: CommandRecord) { records.append(r) }
}

/// Seconds since the run's load started.
public struct RunClock: Sendable {
    public let start: ContinuousClock.Instant
    public init() { start = .now }
    public var elapsed: Double {
        let d = ContinuousClock.now - start
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}
