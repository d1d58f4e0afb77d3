import Foundation
import StreamWorker

/// What the mail handlers of CRM and billing share: reading the entities an event refers to from
/// the read models, and handing the mail to msg under the delivery's idempotency key. Every
/// handled event returns the ``AppliedLedger`` effect, which the runtime commits with its
/// acknowledgement: the runtime's own count of how often it applied each event.
struct MailHandlerSupport: Sendable {
    let readModel: ReadModel
    let mail: MailClient
    /// The chaos harness's slow-handler mode (never in production): after msg took the mail, the
    /// handler waits a random time up to this before it returns, so that a SIGKILL often finds
    /// entries whose external effect is done and whose settle is not (zero: off).
    var pauseAfterMail: Duration = .zero

    /// Sends one mail for a delivery and returns the ledger effect for the runtime to commit.
    /// msg refusing it (4xx) can never succeed, so the event is dead-lettered at once with msg's
    /// reason (`DeliveryError.invalid`); msg unreachable (refused, timeout, 5xx) is not the
    /// event's fault (`DeliveryError.unavailable`): the runtime's circuit breaker holds the
    /// subscription back and probes msg, and the event is retried for the outage window
    /// (24 h by default) instead of being dead-lettered after a few quick tries, so a rolling
    /// restart of msg loses no mail to the dead letters.
    func send(to: String, msg: String, for delivery: Delivery) async throws -> HandlerOutcome {
        let receipt: MailReceipt
        do {
            receipt = try await mail.send(to: to, msg: msg, idempotencyKey: delivery.idempotencyKey)
        } catch MailClient.Failure.rejected(let status, let body) {
            throw DeliveryError.invalid("msg rejected the mail (\(status)): \(body)")
        } catch MailClient.Failure.unavailable(let reason) {
            throw DeliveryError.unavailable("msg unavailable: \(reason)")
        }
        if pauseAfterMail > .zero {
            try await Task.sleep(for: pauseAfterMail * Double.random(in: 0...1))
        }
        return .done(effects: AppliedLedger.effects(for: delivery, msgRepeated: receipt.status == "duplicate"))
    }

    /// The customer of an order: the live one, or the last state of a deleted one (a customer who
    /// ordered and then left still gets the mails about that order, at the last known address).
    /// A customer the read model does not have is a ``MissingReference``: retried, then
    /// dead-lettered with the reason.
    func customer(_ id: String, of what: String) async throws -> Customer {
        guard let found = try await readModel.lookup(Customer.self, id: id) else {
            throw MissingReference(what: what, type: .customer, id: id)
        }
        return found.entity
    }

    /// The products of an order, one per unit, live or deleted; nil for ids never seen.
    func products(_ ids: [String]) async throws -> [(id: String, product: Product?)] {
        var cache: [String: Product?] = [:]
        var out: [(id: String, product: Product?)] = []
        for id in ids {
            if cache[id] == nil { cache[id] = .some(try await readModel.lookup(Product.self, id: id)?.entity) }
            out.append((id, cache[id]!))
        }
        return out
    }

    /// The products, each known; else the first id the read model does not have is a
    /// ``MissingReference`` (the order service never makes such an order).
    func known(_ products: [(id: String, product: Product?)], of what: String) throws -> [Product] {
        try products.map { p in
            guard let product = p.product else { throw MissingReference(what: what, type: .product, id: p.id) }
            return product
        }
    }

    /// The sum of the prices, as the mails write it (`1234` or `12.50`).
    func sum(_ products: [(id: String, product: Product?)], of what: String) throws -> String {
        let prices = try known(products, of: what).map(\.price.value)
        if let exact = Self.exactSum(prices) { return exact }
        let total = prices.reduce(0.0, +)
        // Prices as large as JSON allows add up past what a Double holds: the event cannot be
        // mailed, so it is dead-lettered with this reason rather than written as "inf".
        guard total.isFinite else { throw MalformedEvent("the prices of \(what) add up to more than a number can hold") }
        return Self.format(total)
    }

    /// The sum to the cent, added in decimal from each price as its client wrote it (a Double's
    /// shortest text), when it fits 18 digits of cents; else nil. Added as Doubles, 999 units at
    /// 999,999,999.99 and one at 0.01 came to ...990.01 instead of 998,999,999,990.02 (a trial;
    /// README promises every bill exact to the cent).
    static func exactSum(_ prices: [Double]) -> String? {
        var total = Decimal(0)
        for price in prices {
            guard price.isFinite, let decimal = Decimal(string: "\(price)", locale: Locale(identifier: "en_US_POSIX")) else { return nil }
            total += decimal
        }
        var hundredths = total * 100
        var cents = Decimal()
        NSDecimalRound(&cents, &hundredths, 0, .plain)
        guard cents.magnitude < Decimal(1_000_000_000_000_000_000) else { return nil }
        let whole = NSDecimalNumber(decimal: cents).int64Value
        let sign = whole < 0 ? "-" : ""
        let (euros, rest) = (whole.magnitude / 100, whole.magnitude % 100)
        if rest == 0 { return "\(sign)\(euros)" }
        return "\(sign)\(euros).\(rest < 10 ? "0" : "")\(rest)"
    }

    static func format(_ amount: Double) -> String {
        if let whole = JSONNumber(amount).integer { return String(whole) }
        // Above about 9.2e16 the cents do not fit an Int, and converting them traps: a price of
        // 1e17 crashed every billing worker that took the order (found by a user-style test,
        // 2026-12-04). Such amounts are written from the Double's own digits.
        guard let cents = Int(exactly: (amount * 100).rounded()) else { return String(format: "%.2f", amount) }
        let fraction = String(abs(cents) % 100)
        return "\(cents / 100).\(fraction.count == 1 ? "0" + fraction : fraction)"
    }
}
