import RedisClient

/// The mails OrderShop sends, worded like the original's.
public enum MailKind: String, Sendable, CaseIterable, Codable, CustomStringConvertible {
    /// CRM, customer_created.
    case welcome
    /// CRM, customer_deleted.
    case goodbye = "good-bye"
    /// CRM, order_created.
    case thankYou = "thank-you"
    /// Billing, order_created.
    case pleasePay = "please-pay"
    /// Billing, billing_created.
    case paymentReceived = "payment-received"

    public var description: String { rawValue }

    /// The group whose worker sends it.
    public var group: String {
        switch self {
        case .welcome, .goodbye, .thankYou: WorkerName.crm.group
        case .pleasePay, .paymentReceived: WorkerName.billing.group
        }
    }

    /// The phrase that marks the kind in a mail's text.
    var marker: String {
        switch self {
        case .welcome: "Welcome to Ordershop"
        case .goodbye: "Good bye"
        case .thankYou: "Thank you for buying"
        case .pleasePay: "Please transfer"
        case .paymentReceived: "received your payment"
        }
    }

    /// The kind of a mail, from its text.
    public static func of(_ text: String) -> MailKind? { allCases.first { text.contains($0.marker) } }

    static func welcome(name: String) -> String {
        "Dear \(clip(name))!\n\nWelcome to Ordershop.\n\nCheers"
    }

    static func goodbye(name: String) -> String {
        "Dear \(clip(name))!\n\nGood bye, hope to see you soon again at Ordershop.\n\nCheers"
    }

    static func thankYou(name: String, products: [String]) -> String {
        "Dear \(clip(name))!\n\nThank you for buying following \(products.count) products from Ordershop:\n\(products.map(clip).joined(separator: ", "))\n\nCheers"
    }

    static func pleasePay(name: String, sum: String) -> String {
        "Dear \(clip(name))!\n\nPlease transfer EUR \(sum) with your favourite payment method.\n\nCheers"
    }

    static func paymentReceived(name: String, sum: String, orderID: String) -> String {
        "Dear \(clip(name))!\n\nWe have received your payment of EUR \(sum) for order \(orderID). Thank you!\n\nCheers"
    }

    /// A name as a mail writes it: at most ``FieldLimits/name`` bytes, cut on a character. Names
    /// are refused longer at input; this keeps entities written before that limit (or straight
    /// into a stream) from making a mail larger than msg accepts (a thank-you mail lists a name
    /// per unit: 1,000 units x 200 bytes is within ``FieldLimits/mail``).
    static func clip(_ name: String) -> String {
        guard name.utf8.count > FieldLimits.name else { return name }
        var out = ""
        for c in name {
            if out.utf8.count + c.utf8.count > FieldLimits.name - 3 { break }
            out.append(c)
        }
        return out + "…"
    }
}

/// One entry of `mail:sent`.
public struct SentMail: Sendable, Hashable {
    public var entryID: String
    public var key: String
    public var to: String
    public var msg: String
    public var kind: MailKind? { MailKind.of(msg) }
}

/// Reads `mail:sent`, for the demo, tests and anyone who wants to count mails.
public struct MailLog: Sendable {
    public let pool: any RedisClientProtocol
    public init(pool: any RedisClientProtocol) { self.pool = pool }

    /// Every mail sent, oldest first.
    public func all() async throws -> [SentMail] {
        var out: [SentMail] = []
        var start = "-"
        while true {
            let page = try await pool.send(XRANGE(RedisArgument(MailKeys.sent), start: start, end: "+", count: 1000))
            for e in page {
                out.append(SentMail(entryID: e.id, key: e.string("key") ?? "", to: e.string("to") ?? "", msg: e.string("msg") ?? ""))
            }
            guard page.count == 1000, let last = page.last else { return out }
            start = "(" + last.id
        }
    }

    /// How many mails were sent.
    public func count() async throws -> Int {
        try await pool.send(XLEN(RedisArgument(MailKeys.sent)))
    }
}
