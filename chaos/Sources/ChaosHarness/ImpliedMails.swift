import OrderShop
import RedisClient

/// What each event implies a mail to be beyond its key: its kind, and the addresses it may go to.
///
/// Why: mails were matched by key only, so a handler that sent the wrong mail (a good-bye for a
/// new customer) or sent it to the wrong customer passed every check. The kind follows from the
/// (stream, group) alone. The address is the event's own customer's for customer events; for an
/// order or a billing the worker reads the customer (and a billing's order) from the read model
/// when it handles the event, which may be later than the event: any address that customer ever
/// had (created, updated, deleted events) is accepted, and for a billing any customer its order
/// ever named.
struct ImpliedMails {
    struct Implied {
        var kind: MailKind
        var recipients: Set<String>
    }

    private var customerEmails: [String: Set<String>] = [:]
    private var orderCustomers: [String: Set<String>] = [:]

    /// Learns the addresses and the orders' customers from every entity event of the history
    /// (injected entries included: what a read model may have folded in, a reader may have read),
    /// and the addresses of every customer update sent, whatever its outcome: on a cluster a
    /// worker reads the customer without waiting for replicas, so it may mail an address whose
    /// update a failover lost after the worker read it (a review).
    init(_ entries: [String: [StreamEntry]], records: [CommandRecord] = [], layout: ShopLayout) {
        // Not one refused (4xx, or 503 "not applied"): it changed nothing.
        for record in records where record.type == EntityType.customer.rawValue && record.outcome != .failed {
            guard let email = record.email, let id = record.ids.first else { continue }
            customerEmails[id, default: []].insert(email)
        }
        for action in EventAction.allCases {
            for e in entries.entries(of: .customer, action, in: layout) {
                guard let id = e.string("entity_id"), let email = Self.entity(e)?["email"]?.stringValue else { continue }
                customerEmails[id, default: []].insert(email)
            }
            for e in entries.entries(of: .order, action, in: layout) {
                guard let id = e.string("entity_id"), let customer = Self.entity(e)?["customer_id"]?.stringValue else { continue }
                orderCustomers[id, default: []].insert(customer)
            }
        }
    }

    /// The mail the event of `e` implies for `group`; nil when nothing can be said (no mail is
    /// implied for that pair, or the entry holds no readable entity: such an event is dead-lettered).
    func implied(by e: StreamEntry, in stream: String, for group: String) -> Implied? {
        guard let entity = Self.entity(e) else { return nil }
        func emails(ofCustomer id: String?) -> Set<String> { id.flatMap { customerEmails[$0] } ?? [] }
        // A partition stream implies what its logical stream does.
        switch (WorkerStreams.logical(stream), group) {
        case (EntityType.customer.stream(.created), CRMWorker.group):
            return Implied(kind: .welcome, recipients: Set([entity["email"]?.stringValue].compactMap { $0 }))
        case (EntityType.customer.stream(.deleted), CRMWorker.group):
            return Implied(kind: .goodbye, recipients: Set([entity["email"]?.stringValue].compactMap { $0 }))
        case (EntityType.order.stream(.created), CRMWorker.group):
            return Implied(kind: .thankYou, recipients: emails(ofCustomer: entity["customer_id"]?.stringValue))
        case (EntityType.order.stream(.created), BillingWorker.group):
            return Implied(kind: .pleasePay, recipients: emails(ofCustomer: entity["customer_id"]?.stringValue))
        case (EntityType.billing.stream(.created), BillingWorker.group):
            let customers = entity["order_id"]?.stringValue.flatMap { orderCustomers[$0] } ?? []
            return Implied(kind: .paymentReceived, recipients: customers.reduce(into: []) { $0.formUnion(emails(ofCustomer: $1)) })
        default:
            return nil
        }
    }

    /// Why a mail is not the one its event implies; nil when it is.
    static func mismatch(_ mail: History.Mail, _ implied: Implied) -> String? {
        if mail.kind != implied.kind.rawValue {
            return "mail \(mail.key) is a \(mail.kind ?? "mail of no known kind"), its event implies a \(implied.kind.rawValue)"
        }
        if let to = mail.to, !implied.recipients.contains(to) {
            let known = implied.recipients.sorted().prefix(3).joined(separator: ", ")
            return "mail \(mail.key) went to \(to), an address its customer never had (\(known.isEmpty ? "none known" : known))"
        }
        return nil
    }

    private static func entity(_ e: StreamEntry) -> [String: JSONValue]? {
        guard let bytes = e["entity"], case .object(let object)? = try? JSONValue.parse(Array(bytes)) else { return nil }
        return object
    }
}
